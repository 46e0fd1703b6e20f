// Prints the reports bench/run.sh wrote (tandem bench --json files) as
// tables, with each Tandem store's ratio to the official server measured in
// the same run.
//
//   node bench/summary.mjs DIR

import fs from "node:fs"
import path from "node:path"

const dir = process.argv[2]
if (!dir) {
  console.error("usage: node bench/summary.mjs DIR")
  process.exit(2)
}
const reports = {}
for (const f of fs.readdirSync(dir).sort()) {
  if (f.endsWith(".json")) reports[f.slice(0, -5)] = JSON.parse(fs.readFileSync(path.join(dir, f), "utf8"))
}
const names = Object.keys(reports)
const kinds = ["reference", "sqlite", "postgres"].filter(k => names.some(n => n.startsWith(k + "-")))
const label = { reference: "official", sqlite: "tandem-sqlite", postgres: "tandem-postgres" }
const P99_BOUND = 50, TARGET_RATE = 2000

const fmt = (v, d = 1) => (v === undefined || v === null || Number.isNaN(v) ? "-" : v.toFixed(d))
const ratio = (a, b) => {
  if (a === undefined || b === undefined || !b) return "-"
  const q = a / b
  return q >= 0.1 || q === 0 ? q.toFixed(2) : q.toPrecision(2)
}
const mb = b => fmt(b / 1e6)
const row = cols => cols.map(([v, w]) => String(v).padStart(w)).join(" ")

const any = Object.values(reports).find(r => r.machine)
if (any) {
  const m = any.machine
  console.log(`machine: ${m.nproc} × ${m.cpu_model}, ${fmt(m.mem_bytes / 2 ** 30)} GiB memory (${m.goos}/${m.goarch})`)
}

// Load runs.
const rates = [...new Set(names.map(n => n.match(/-load-(\d+)$/)?.[1]).filter(Boolean).map(Number))].sort((a, b) => a - b)
if (rates.length) {
  const first = reports[names.find(n => n.includes("-load-"))].load
  console.log(`\nload: ${first.docs} documents × ${first.clients_per_doc} clients, ${first.duration_s} s measured per rate after ${first.warmup_s} s warm-up`)
  const w = [6, 16, 9, 7, 7, 7, 8, 6, 8, 8, 8, 8, 8]
  console.log(row([["rate", 6], ["server", 16], ["achieved", 9], ["p50ms", 7], ["p95ms", 7], ["p99ms", 7], ["maxms", 8], ["lost", 6],
    ["deliv/s", 8], ["srvCPU%", 8], ["µs/edit", 8], ["peakMB", 8], ["genCPU%", 8]]))
  for (const rate of rates) {
    for (const k of kinds) {
      const r = reports[`${k}-load-${rate}`]?.load
      if (!r) continue
      const pg = reports[`${k}-load-${rate}.pg`]
      const s = r.server ?? {}
      let cpuPerEdit = s.cpu_per_edit_us
      let cpuPct = s.cpu_percent
      if (pg) { // Tandem's and its database backends' CPU together
        cpuPerEdit = ((s.cpu_s + pg.postgres_cpu_s) * 1e6) / r.edits
        cpuPct = (100 * (s.cpu_s + pg.postgres_cpu_s)) / r.duration_s
      }
      console.log(row([[rate, w[0]], [label[k], w[1]], [fmt(r.edit_rate), w[2]], [fmt(r.fanout.p50_ms), w[3]], [fmt(r.fanout.p95_ms), w[4]],
        [fmt(r.fanout.p99_ms), w[5]], [fmt(r.fanout.max_ms), w[6]], [r.lost, w[7]], [fmt(r.deliveries_per_s, 0), w[8]],
        [fmt(cpuPct, 0), w[9]], [fmt(cpuPerEdit, 0), w[10]], [mb(s.rss_peak_bytes), w[11]], [fmt(r.load_generator.cpu_percent, 0), w[12]]]))
      r._cpuPerEdit = cpuPerEdit
    }
  }
  if (kinds.includes("postgres")) console.log("(tandem-postgres CPU includes the Postgres backends serving its database)")

  if (kinds.includes("reference")) {
    console.log("\nratios, Tandem ÷ official at the same rate (below 1: Tandem lower)")
    console.log(row([["rate", 6], ["server", 16], ["p50", 7], ["p99", 7], ["max", 7], ["CPU/edit", 9], ["peak RSS", 9]]))
    for (const rate of rates) {
      const ref = reports[`reference-load-${rate}`]?.load
      if (!ref) continue
      for (const k of kinds.filter(k => k !== "reference")) {
        const r = reports[`${k}-load-${rate}`]?.load
        if (!r) continue
        console.log(row([[rate, 6], [label[k], 16], [ratio(r.fanout.p50_ms, ref.fanout.p50_ms), 7], [ratio(r.fanout.p99_ms, ref.fanout.p99_ms), 7],
          [ratio(r.fanout.max_ms, ref.fanout.max_ms), 7], [ratio(r._cpuPerEdit, ref._cpuPerEdit), 9],
          [ratio(r.server?.rss_peak_bytes, ref.server?.rss_peak_bytes), 9]]))
      }
    }
  }

  console.log(`\ntarget: p99 fan-out < ${P99_BOUND} ms at ≥ ${TARGET_RATE} edits/s with nothing lost`)
  for (const k of kinds) {
    const ok = rates.filter(rate => {
      const r = reports[`${k}-load-${rate}`]?.load
      return r && r.fanout.p99_ms < P99_BOUND && r.lost === 0 && r.errors === 0 && r.edit_rate >= 0.95 * rate
    })
    const best = ok.length ? Math.max(...ok) : 0
    const met = best >= TARGET_RATE ? "met" : "not met"
    console.log(`  ${label[k].padEnd(16)} highest rate passing: ${best ? best + " edits/s" : "none"} → ${met}`)
  }
}

// Two load processes against one server.
const split = names.filter(n => /-split-\d+-\d$/.test(n))
if (split.length) {
  const rate = Number(split[0].match(/-split-(\d+)-/)[1])
  const one = reports[`sqlite-load-${rate}`]?.load
  console.log(`\none load process vs two (tandem-sqlite, ${rate} edits/s in all)`)
  if (one) console.log(`  one process : ${fmt(one.edit_rate)} edits/s, p50 ${fmt(one.fanout.p50_ms)} ms, p99 ${fmt(one.fanout.p99_ms)} ms, ${fmt(one.deliveries_per_s, 0)} deliveries/s, lost ${one.lost}, generator CPU ${fmt(one.load_generator.cpu_percent, 0)} %`)
  let edits = 0, deliv = 0
  for (const n of split) {
    const r = reports[n].load
    edits += r.edit_rate
    deliv += r.deliveries_per_s
    console.log(`  ${n.slice(-1) === "1" ? "two, first " : "two, second"} : ${fmt(r.edit_rate)} edits/s, p50 ${fmt(r.fanout.p50_ms)} ms, p99 ${fmt(r.fanout.p99_ms)} ms, ${fmt(r.deliveries_per_s, 0)} deliveries/s, lost ${r.lost}, generator CPU ${fmt(r.load_generator.cpu_percent, 0)} %`)
  }
  console.log(`  two, summed : ${fmt(edits)} edits/s, ${fmt(deliv, 0)} deliveries/s`)
}

// Idle connections.
const idle = names.filter(n => /-idle-\d+-(yes|no)$/.test(n))
if (idle.length) {
  console.log("\nidle connections: server RSS per connection ((after - before) / N)")
  console.log(row([["conns", 7], ["document", 9], ["server", 16], ["before MB", 10], ["after MB", 9], ["bytes/conn", 11], ["÷ official", 11]]))
  const counts = [...new Set(idle.map(n => Number(n.match(/-idle-(\d+)-/)[1])))].sort((a, b) => a - b)
  for (const c of counts) {
    for (const docs of ["no", "yes"]) {
      const ref = reports[`reference-idle-${c}-${docs}`]?.idle
      for (const k of kinds) {
        const r = reports[`${k}-idle-${c}-${docs}`]?.idle
        if (!r) continue
        console.log(row([[c, 7], [docs === "yes" ? "one each" : "none", 9], [label[k], 16], [mb(r.rss_before_bytes), 10], [mb(r.rss_after_bytes), 9],
          [fmt(r.rss_per_connection_bytes, 0), 11], [k === "reference" ? "" : ratio(r.rss_per_connection_bytes, ref?.rss_per_connection_bytes), 11]]) +
          (r.setup_error ? `  (only ${r.opened} opened, ${r.ready} ready: per opened connection)` : ""))
      }
    }
  }
  console.log("targets: without a document ≤ 4 kB per connection and ≤ 1/4 of the official; with one small document ≤ 1/3 of the official")
  for (const c of counts) {
    for (const k of kinds.filter(k => k !== "reference")) {
      const bare = reports[`${k}-idle-${c}-no`]?.idle, refBare = reports[`reference-idle-${c}-no`]?.idle
      const doc = reports[`${k}-idle-${c}-yes`]?.idle, refDoc = reports[`reference-idle-${c}-yes`]?.idle
      const verdicts = []
      if (bare) {
        const q = refBare ? bare.rss_per_connection_bytes / refBare.rss_per_connection_bytes : NaN
        verdicts.push(`without: ${bare.rss_per_connection_bytes <= 4096 && q <= 0.25 ? "met" : "not met"}`)
      }
      if (doc && refDoc) verdicts.push(`with a document: ${doc.rss_per_connection_bytes <= refDoc.rss_per_connection_bytes / 3 ? "met" : "not met"}`)
      if (verdicts.length) console.log(`  ${String(c).padStart(6)} ${label[k].padEnd(16)} ${verdicts.join(", ")}`)
    }
  }

  const rel = idle.filter(n => reports[n].idle.release)
  if (rel.length) {
    console.log("\nafter the connections with documents closed (Tandem with a short --idle-timeout evicts them)")
    console.log(row([["server", 16], ["conns", 7], ["before MB", 10], ["open MB", 8], ["end MB", 8], ["waited s", 9], ["end÷before", 11], ["≤1.2 after s", 13]]))
    for (const n of rel) {
      const r = reports[n].idle, x = r.release, k = n.split("-")[0]
      console.log(row([[label[k], 16], [r.connections, 7], [mb(r.rss_before_bytes), 10], [mb(r.rss_after_bytes), 8], [mb(x.rss_end_bytes), 8],
        [fmt(x.wait_s, 0), 9], [fmt(x.end_over_before, 2), 11], [x.within_20pct_after_s < 0 ? "never" : fmt(x.within_20pct_after_s, 0), 13]]))
    }
    console.log("target: back within 20 % of the baseline (end÷before ≤ 1.2)")
    for (const n of rel.filter(n => !n.startsWith("reference-"))) {
      const x = reports[n].idle.release
      console.log(`  ${label[n.split("-")[0]].padEnd(16)} ${x.end_over_before <= 1.2 ? "met" : "not met"}`)
    }
  }
}
