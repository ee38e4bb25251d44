// Parses and analyses KQL queries with Microsoft's own Kusto parser (Kusto.Language, the
// npm package @kusto/language-service-next, which ./dev setup installs into .tools/kusto/),
// against the Application Insights tables and columns the queries read.
//
//   node tests/kql_check.js MODULES_DIR < {"tables": {name: "(col:type, ...)"}, "queries": [...]}
//   -> [[{"severity", "message", "start", "text"}, ...] per query]
"use strict";
const path = require("path");
const modules = process.argv[2];
require(path.join(modules, "@kusto/language-service-next/bridge.min.js"));
require(path.join(modules, "@kusto/language-service-next/Kusto.Language.Bridge.min.js"));

const K = Kusto.Language;
const S = K.Symbols;
let input = "";
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const given = JSON.parse(input);
  const tables = Object.entries(given.tables).map(
    ([name, schema]) => new S.TableSymbol.$ctor7(name, schema, ""));
  const globals = K.GlobalState.Default.WithDatabase(new S.DatabaseSymbol.ctor("appinsights", tables));
  const answers = given.queries.map((query) => {
    const diagnostics = K.KustoCode.ParseAndAnalyze(query, globals).GetDiagnostics();
    const found = [];
    for (let i = 0; i < diagnostics.Count; i++) {
      const d = diagnostics.getItem(i);
      found.push({ severity: String(d.Severity), message: d.Message, start: d.Start,
                   text: query.substr(d.Start, Math.max(d.Length, 1)) });
    }
    return found;
  });
  process.stdout.write(JSON.stringify(answers));
});
