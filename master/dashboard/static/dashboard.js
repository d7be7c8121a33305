// a3s-gateway dashboard: refresh the page's live region (<main id="live">) every 2 s in place, and filter lists
// as one types. The server renders every fragment (escaped); without this script the pages are plain HTML.
"use strict";
(function () {
  const live = document.getElementById("live");
  if (!live) return;
  const url = new URL(window.location.href);
  let refreshes = 0;
  let busy = false;

  async function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const fragment = new URL(url);
      fragment.searchParams.set("fragment", "live");
      const r = await fetch(fragment, {credentials: "same-origin", redirect: "manual"});
      if (r.status === 401 || r.type === "opaqueredirect") {
        window.location.assign("/dashboard/login");
        return;
      }
      if (!r.ok) return;
      const doc = new DOMParser().parseFromString(await r.text(), "text/html");
      live.replaceChildren(...doc.body.childNodes);
      refreshes += 1;
      live.dataset.refreshes = String(refreshes);
    } catch (err) {
      live.dataset.error = String(err);
    } finally {
      busy = false;
    }
  }

  const search = document.getElementById("q");
  if (search) {
    let timer = null;
    search.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        url.searchParams.set("q", search.value);
        window.history.replaceState(null, "", url);
        refresh();
      }, 200);
    });
  }
  setInterval(refresh, 2000);
})();
