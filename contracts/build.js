#!/usr/bin/env node
// Compiles MeritAchievement.sol offline with solc-js (standard JSON; imports are read
// from node_modules) and writes ../chain/abi/MeritAchievement.json: the ABI and the
// creation bytecode the Rust crate embeds, so building merit needs no Solidity compiler.
// The output is deterministic (pinned compiler, settings and key order): rebuilding an
// unchanged contract leaves the file byte-identical. `--check` fails if the committed
// file differs from a fresh build instead of writing it.
"use strict";

const fs = require("fs");
const path = require("path");
const solc = require("solc");

const NAME = "MeritAchievement";
const SOURCE = `${NAME}.sol`;
const OUT = path.join(__dirname, "..", "chain", "abi", `${NAME}.json`);

function findImports(importPath) {
  const candidates = [
    path.join(__dirname, "node_modules", importPath),
    path.join(__dirname, importPath),
  ];
  for (const file of candidates) {
    if (fs.existsSync(file)) return { contents: fs.readFileSync(file, "utf8") };
  }
  return { error: `import not found: ${importPath} (run npm ci in contracts/)` };
}

const input = {
  language: "Solidity",
  sources: { [SOURCE]: { content: fs.readFileSync(path.join(__dirname, SOURCE), "utf8") } },
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "cancun",
    metadata: { bytecodeHash: "none" },
    outputSelection: { [SOURCE]: { [NAME]: ["abi", "evm.bytecode.object"] } },
  },
};

const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
const errors = (output.errors || []).filter((e) => e.severity === "error");
for (const e of output.errors || []) console.error(e.formattedMessage);
if (errors.length > 0) process.exit(1);

const contract = output.contracts[SOURCE][NAME];
const artifact = {
  contractName: NAME,
  compiler: `solc ${solc.version()}`,
  settings: { optimizer: input.settings.optimizer, evmVersion: input.settings.evmVersion },
  abi: contract.abi,
  bytecode: `0x${contract.evm.bytecode.object}`,
};
const text = `${JSON.stringify(artifact, null, 2)}\n`;

if (process.argv.includes("--check")) {
  const committed = fs.existsSync(OUT) ? fs.readFileSync(OUT, "utf8") : "";
  if (committed !== text) {
    console.error(`${path.relative(process.cwd(), OUT)} is stale: run node contracts/build.js`);
    process.exit(1);
  }
  console.log(`${NAME}: committed artifact is up to date`);
} else {
  fs.mkdirSync(path.dirname(OUT), { recursive: true });
  fs.writeFileSync(OUT, text);
  console.log(`${NAME}: wrote ${path.relative(process.cwd(), OUT)} (${contract.evm.bytecode.object.length / 2} bytes of bytecode)`);
}
