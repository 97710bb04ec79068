// The console's only script (the Content-Security-Policy allows no inline script). Pages work
// without it; with it, a running run's output is followed live.
"use strict";

(function () {
  const log = document.getElementById("log");
  if (!log || log.dataset.follow !== "true" || !window.fetch || !window.TextDecoder) {
    return;
  }
  const end = document.getElementById("log-end");
  const decoder = new TextDecoder();
  // The stream starts from the beginning of the output: it replaces what the page was served with.
  let first = true;
  fetch(log.dataset.src, { credentials: "same-origin" })
    .then(function (response) {
      if (!response.ok || !response.body) {
        throw new Error("the output cannot be followed: " + response.status);
      }
      const reader = response.body.getReader();
      function pump() {
        return reader.read().then(function (chunk) {
          if (chunk.done) {
            log.dataset.follow = "ended";
            if (end) {
              end.hidden = false;
            }
            return;
          }
          const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
          if (first) {
            log.textContent = "";
            first = false;
          }
          log.textContent += decoder.decode(chunk.value, { stream: true });
          if (atBottom) {
            log.scrollTop = log.scrollHeight;
          }
          return pump();
        });
      }
      return pump();
    })
    .catch(function (e) {
      log.dataset.follow = "failed";
      if (end) {
        end.textContent = String(e.message || e);
        end.hidden = false;
      }
    });
})();
