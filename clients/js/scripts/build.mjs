#!/usr/bin/env node
// Builds the package (dist/: ESM and .d.ts) and the demo that the Go binary
// embeds (api/web/dist/). Both builds are deterministic: the same sources and
// the same node_modules give byte-identical files, which is what
// scripts/check-demo-build.sh relies on.
//
//   node scripts/build.mjs package            → clients/js/dist
//   node scripts/build.mjs demo [--outdir D]  → api/web/dist (or D)

import { build as esbuild } from "esbuild"
import { execFileSync } from "node:child_process"
import { copyFileSync, mkdirSync, readdirSync, rmSync, writeFileSync, readFileSync } from "node:fs"
import { createRequire } from "node:module"
import path from "node:path"
import { fileURLToPath } from "node:url"

const HERE = path.dirname(fileURLToPath(import.meta.url))
/** clients/js */
export const PKG_ROOT = path.resolve(HERE, "..")
/** the repository root */
export const REPO_ROOT = path.resolve(PKG_ROOT, "..", "..")
/** where the demo's committed build lives */
export const DEMO_OUT = path.join(REPO_ROOT, "api", "web", "dist")

const require = createRequire(import.meta.url)

/** Build the package into clients/js/dist. */
export async function buildPackage({ outdir = path.join(PKG_ROOT, "dist") } = {}) {
  rmSync(outdir, { recursive: true, force: true })
  const src = path.join(PKG_ROOT, "src")
  const entryPoints = readdirSync(src)
    .filter(f => f.endsWith(".ts") && !f.endsWith(".d.ts"))
    .map(f => path.join(src, f))
  await esbuild({
    entryPoints,
    outdir,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    bundle: false,
    logLevel: "warning",
  })
  execFileSync(process.execPath, [require.resolve("typescript/bin/tsc"), "-p", "tsconfig.json", "--outDir", outdir], {
    cwd: PKG_ROOT,
    stdio: "inherit",
  })
  return outdir
}

/** Build the demo into api/web/dist (or outdir). */
export async function buildDemo({ outdir = DEMO_OUT } = {}) {
  rmSync(outdir, { recursive: true, force: true })
  mkdirSync(outdir, { recursive: true })
  const demo = path.join(PKG_ROOT, "src", "demo")
  await esbuild({
    entryPoints: { app: path.join(demo, "main.ts") },
    outdir,
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: true,
    charset: "utf8",
    legalComments: "eof",
    // no absolute paths, no timestamps, no source maps: byte-identical output
    sourcemap: false,
    metafile: false,
    logLevel: "warning",
    // Only slim entry points are imported (the package's and automerge-repo's
    // own): main.ts loads the core from automerge.wasm. The bundler entry of
    // @automerge/automerge would need wasm ESM integration, which esbuild
    // does not have, so importing it by mistake fails this build.
    define: { "process.env.NODE_ENV": '"production"' },
  })
  copyFileSync(path.join(demo, "index.html"), path.join(outdir, "index.html"))
  copyFileSync(path.join(demo, "favicon.svg"), path.join(outdir, "favicon.svg"))
  copyFileSync(require.resolve("@automerge/automerge/automerge.wasm"), path.join(outdir, "automerge.wasm"))
  const versions = Object.fromEntries(
    ["@automerge/automerge", "@automerge/automerge-repo", "@automerge/automerge-repo-network-websocket", "@automerge/automerge-repo-storage-indexeddb", "esbuild"].map(
      name => [name, JSON.parse(readFileSync(path.join(PKG_ROOT, "node_modules", name, "package.json"), "utf8")).version]
    )
  )
  writeFileSync(
    path.join(outdir, "BUILD.txt"),
    "Built by `npm run build:demo` in clients/js from clients/js/src (demo/ and the package). Do not edit:\n" +
      "scripts/check-demo-build.sh rebuilds it and fails when it differs.\n\n" +
      Object.entries(versions)
        .map(([k, v]) => `${k} ${v}\n`)
        .join("")
  )
  return outdir
}

async function main(argv) {
  const [what, ...rest] = argv
  const i = rest.indexOf("--outdir")
  const outdir = i >= 0 ? path.resolve(rest[i + 1]) : undefined
  if (what === "package") console.log(`built ${path.relative(process.cwd(), await buildPackage(outdir ? { outdir } : {}))}`)
  else if (what === "demo") console.log(`built ${path.relative(process.cwd(), await buildDemo(outdir ? { outdir } : {})) || "."}`)
  else {
    console.error("usage: node scripts/build.mjs package|demo [--outdir DIR]")
    process.exit(2)
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch(e => {
    console.error(e)
    process.exit(1)
  })
}
