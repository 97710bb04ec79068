//! Guards against publishing a broken tree: how many deletions a run may make.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `max_delete`: a run that would delete more than this many files, or this percentage of the
/// tree, fails before it changes anything. Written `1000`, `"1000"` or `"10%"`; `"off"`: no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxDelete {
    Count(u64),
    Percent(u8),
    Off,
}

impl MaxDelete {
    pub fn parse(text: &str) -> Result<MaxDelete, String> {
        let t = text.trim();
        if t == "off" {
            return Ok(MaxDelete::Off);
        }
        if let Some(p) = t.strip_suffix('%') {
            return match p.trim().parse::<u8>() {
                Ok(p) if p <= 100 => Ok(MaxDelete::Percent(p)),
                _ => Err(format!("'{t}' is not a percentage from 0% to 100%")),
            };
        }
        t.parse::<u64>()
            .map(MaxDelete::Count)
            .map_err(|_| format!("'{t}' is not a count (1000), a percentage (10%) or off"))
    }

    /// Whether deleting `deleted` of a tree of `tree` files stays within the limit.
    pub fn allows(self, deleted: u64, tree: u64) -> bool {
        match self {
            MaxDelete::Off => true,
            MaxDelete::Count(n) => deleted <= n,
            // deleted / tree <= p / 100, in integers.
            MaxDelete::Percent(p) => deleted.saturating_mul(100) <= tree.saturating_mul(u64::from(p)),
        }
    }
}

impl std::fmt::Display for MaxDelete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxDelete::Count(n) => write!(f, "{n}"),
            MaxDelete::Percent(p) => write!(f, "{p}%"),
            MaxDelete::Off => f.write_str("off"),
        }
    }
}

impl Serialize for MaxDelete {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MaxDelete {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Count(n) => Ok(MaxDelete::Count(n)),
            Raw::Text(t) => MaxDelete::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for MaxDelete {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("a count (`1000`), a percentage of the tree (`10%`), or `off`"))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for MaxDelete {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_percentages_and_off() {
        assert_eq!(MaxDelete::parse("10%"), Ok(MaxDelete::Percent(10)));
        assert_eq!(serde_json::from_str::<MaxDelete>("1000").unwrap(), MaxDelete::Count(1000));
        assert_eq!(serde_json::from_str::<MaxDelete>("\"off\"").unwrap(), MaxDelete::Off);
        assert!(MaxDelete::parse("101%").is_err() && MaxDelete::parse("-1").is_err() && MaxDelete::parse("x").is_err());
        assert!(MaxDelete::Percent(50).allows(50, 100) && !MaxDelete::Percent(50).allows(51, 100));
        assert!(MaxDelete::Count(3).allows(3, 10) && !MaxDelete::Count(3).allows(4, 10));
        assert_eq!(serde_json::to_string(&MaxDelete::Percent(5)).unwrap(), "\"5%\"");
    }
}
