// Checks a Grafana dashboard file (default: deploy/grafana/dashboards/yolod.json).
//   node check_grafana.mjs [--list-exprs] [dashboard.json]
// Without --list-exprs: type-checks it against grafana_dashboard.ts (Grafana's published
// @grafana/schema types) with tsc, and checks that every panel, target and annotation uses the
// Prometheus data source uid "prometheus"; exit 1 with the errors on stderr.
// With --list-exprs: prints "<panel title>\t<expr>" for every PromQL expression, one per line,
// `$instance` kept (annotations as "annotation: <name>"); no other check.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const listExprs = args.includes('--list-exprs');
const files = args.filter((a) => a !== '--list-exprs');
const path = resolve(files[0] ?? join(here, '../../deploy/grafana/dashboards/yolod.json'));

let dashboard;
try {
  dashboard = JSON.parse(readFileSync(path, 'utf8'));
} catch (e) {
  console.error(`check_grafana: ${path}: ${e.message}`);
  process.exit(1);
}

// Panels in order, rows' nested panels included.
function* allPanels(d) {
  for (const p of Array.isArray(d.panels) ? d.panels : []) {
    yield p;
    if (p && Array.isArray(p.panels)) yield* p.panels;
  }
}

function* allExprs(d) {
  for (const p of allPanels(d)) {
    for (const t of Array.isArray(p?.targets) ? p.targets : []) {
      if (typeof t?.expr === 'string') yield [p.title ?? '', t.expr];
    }
  }
  for (const a of Array.isArray(d.annotations?.list) ? d.annotations.list : []) {
    const expr = a?.target?.expr ?? a?.expr;
    if (typeof expr === 'string') yield [`annotation: ${a.name ?? ''}`, expr];
  }
}

if (listExprs) {
  for (const [title, expr] of allExprs(dashboard)) {
    if (/[\t\n]/.test(title) || /[\t\n]/.test(expr)) {
      console.error(`check_grafana: a title or expression holds a tab or newline: ${title}`);
      process.exit(1);
    }
    console.log(`${title}\t${expr}`);
  }
  process.exit(0);
}

const errors = [];

// (c) One data source everywhere: the provisioned Prometheus (uid "prometheus").
const isProm = (ds) => ds && ds.uid === 'prometheus' && ds.type === 'prometheus';
for (const p of allPanels(dashboard)) {
  const where = `panel ${JSON.stringify(p?.title ?? p?.id)}`;
  if (!isProm(p?.datasource)) errors.push(`${where}: datasource is not {type: prometheus, uid: prometheus}`);
  if (p?.type !== 'row') {
    const targets = Array.isArray(p?.targets) ? p.targets : [];
    if (targets.length === 0) errors.push(`${where}: no targets`);
    for (const t of targets) {
      if (!isProm(t?.datasource)) errors.push(`${where} target ${t?.refId}: datasource is not prometheus`);
      if (typeof t?.expr !== 'string' || t.expr.trim() === '') errors.push(`${where} target ${t?.refId}: no expr`);
    }
  }
}
for (const a of Array.isArray(dashboard.annotations?.list) ? dashboard.annotations.list : []) {
  if (!isProm(a?.datasource) || !isProm(a?.target?.datasource)) {
    errors.push(`annotation ${JSON.stringify(a?.name)}: datasource is not prometheus`);
  }
}
for (const v of Array.isArray(dashboard.templating?.list) ? dashboard.templating.list : []) {
  if (v?.type === 'query' && !isProm(v.datasource)) {
    errors.push(`variable ${v.name}: datasource is not prometheus`);
  }
}
// Panel ids are unique (Grafana keys panels, links and library panels by them).
const ids = [...allPanels(dashboard)].map((p) => p?.id);
for (const id of new Set(ids)) {
  if (ids.filter((x) => x === id).length > 1) errors.push(`panel id ${id} is used more than once`);
}

// (b) The published schema: the JSON as an object literal typed YolodDashboard, through tsc.
const tmpRoot = join(here, '.tmp');
execFileSync('mkdir', ['-p', tmpRoot]);
const tmp = mkdtempSync(join(tmpRoot, 'grafana-'));
try {
  writeFileSync(
    join(tmp, 'dashboard.ts'),
    `import type { YolodDashboard } from '../../grafana_dashboard';\n` +
      `export const dashboard: YolodDashboard = ${JSON.stringify(dashboard, null, 2)};\n`,
  );
  writeFileSync(
    join(tmp, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        noEmit: true,
        target: 'es2022',
        module: 'esnext',
        moduleResolution: 'bundler',
        skipLibCheck: true,
        types: [],
      },
      files: ['dashboard.ts'],
    }),
  );
  const tsc = join(here, 'node_modules/typescript/bin/tsc');
  try {
    execFileSync(process.execPath, [tsc, '-p', join(tmp, 'tsconfig.json'), '--pretty', 'false'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (e) {
    // dashboard.ts(LINE,COL): LINE is one more than in the JSON pretty-printed with 2 spaces.
    const out = `${e.stdout ?? ''}${e.stderr ?? ''}`.trim();
    errors.push(`not a valid Grafana dashboard (@grafana/schema, tsc):\n${out}`);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

if (errors.length > 0) {
  console.error(`check_grafana: ${path}:`);
  for (const e of errors) console.error(`  ${e}`);
  process.exit(1);
}
const n = [...allExprs(dashboard)].length;
console.log(`check_grafana: ${path}: valid (${ids.length} panels, ${n} PromQL expressions)`);
