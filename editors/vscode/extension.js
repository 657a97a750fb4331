// A minimal client: starts `rnnspec lsp` (over stdio) for every .rnn file.
const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const [command, ...args] = vscode.workspace
    .getConfiguration("rnnspec")
    .get("server.command", ["rnnspec", "lsp"]);
  const server = { command, args, transport: TransportKind.stdio };
  client = new LanguageClient(
    "rnnspec",
    "rnnspec",
    { run: server, debug: server },
    { documentSelector: [{ scheme: "file", language: "rnnspec" }, { scheme: "untitled", language: "rnnspec" }] }
  );
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
