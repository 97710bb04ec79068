-- Issue 16: two-stage sync (JSON: {"profile": "debian", "stage1_exclude": [...]}); NULL: one stage.
ALTER TABLE projects ADD COLUMN stages TEXT;
