// A PrismaPg adapter factory whose script execution sends the whole migration.sql as ONE query,
// as Prisma's native schema engine does. @prisma/adapter-pg splits scripts on every `;` and
// autocommits the pieces, which breaks DO $$ ... $$ blocks and is not atomic.
// One pooled connection, so Prisma's session advisory lock and its queries share a session.
"use strict";
const path = require("node:path");

const NODE_MODULES = path.resolve(__dirname, "../../../../tools/node/node_modules");
const { PrismaPg } = require(path.join(NODE_MODULES, "@prisma/adapter-pg"));

function wholeScript(adapter) {
  adapter.executeScript = async function executeScript(script) {
    try {
      await this.client.query(script);
    } catch (error) {
      this.onError(error);
    }
  };
  return adapter;
}

class WholeScriptPg extends PrismaPg {
  async connect() {
    return wholeScript(await super.connect());
  }

  async connectToShadowDb() {
    return wholeScript(await super.connectToShadowDb());
  }
}

function adapter(connectionString) {
  return new WholeScriptPg({ connectionString, max: 1, allowExitOnIdle: true });
}

module.exports = { adapter, WholeScriptPg };
