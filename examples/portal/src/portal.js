// A faceted search page over crossdex's Elasticsearch-compatible API, with Searchkit
// (Elasticsearch requests) and InstantSearch (widgets), as portals written for
// Elasticsearch do. Where crossdex listens comes from the page's address:
//   index.html?api=http://127.0.0.1:8742&key=<base64 of name:token>
import Client from "@searchkit/instantsearch-client";
import Searchkit from "searchkit";
import instantsearch from "instantsearch.js";
import { configure, hits, pagination, refinementList, searchBox, stats } from "instantsearch.js/es/widgets";

const params = new URLSearchParams(window.location.search);
const host = params.get("api") || "http://127.0.0.1:8742";
const apiKey = params.get("key");

const searchkit = new Searchkit({
  connection: { host, ...(apiKey ? { apiKey } : {}) },
  search_settings: {
    search_attributes: [{ field: "title", weight: 2 }, "body"],
    result_attributes: ["title", "source", "kind", "subject_id"],
    highlight_attributes: ["body"],
    facet_attributes: [
      { attribute: "source", field: "source", type: "string" },
      { attribute: "kind", field: "kind", type: "string" },
      { attribute: "project", field: "project", type: "string" },
    ],
  },
});

const search = instantsearch({
  indexName: params.get("index") || "crossdex",
  searchClient: Client(searchkit),
  // No search until the first keystroke.
  searchFunction(helper) {
    if (helper.state.query) {
      helper.search();
    }
  },
});

search.addWidgets([
  configure({ hitsPerPage: 10 }),
  searchBox({ container: "#searchbox", placeholder: "Search subjects, sessions, images, notes…", searchAsYouType: true }),
  stats({
    container: "#stats",
    templates: { text: (d, { html }) => html`<span class="total">${d.nbHits}</span> records` },
  }),
  refinementList({ container: "#source", attribute: "source" }),
  refinementList({ container: "#kind", attribute: "kind" }),
  refinementList({ container: "#project", attribute: "project" }),
  hits({
    container: "#hits",
    templates: {
      item: (hit, { html, components }) => html`
        <div class="hit" data-id="${hit.objectID}">
          <div class="hit-title">${hit.title}</div>
          <div class="hit-meta">${hit.source} · ${hit.kind}${hit.subject_id ? ` · ${hit.subject_id}` : ""}</div>
          <div class="hit-body">${components.Highlight({ attribute: "body", hit })}</div>
        </div>`,
    },
  }),
  pagination({ container: "#pagination" }),
]);

search.on("error", ({ error }) => {
  document.getElementById("error").textContent = `The search failed: ${error.message}`;
});
search.start();
