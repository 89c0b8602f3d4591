// Checks the Kubernetes manifests in a folder (default: deploy/k8s) offline.
//   node check_k8s.mjs [DIR]
// 1. Each document against Kubernetes' OpenAPI schema (kubernetes-models, Kubernetes 1.27 API)
//    and the ServiceMonitor against the Prometheus Operator's CRD schema
//    (@kubernetes-models/prometheus-operator, operator v0.65): `new Kind(doc).validate()`.
// 2. Unknown fields, which those schemas let through (as `kubectl apply --validate=strict` would
//    not): each document as an object literal of the package's TypeScript type, through tsc.
// 3. How the files fit together and what yolod needs (selectors, ports, the Secret's keys, the
//    config's keys, TLS and token off loopback, probes, security context, the GPU).
// Exit 1 with the problems on stderr.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../..');
const dir = resolve(process.argv[2] ?? join(repo, 'deploy/k8s'));

// apiVersion/kind -> the module of its model, the class and its TypeScript interface.
const KINDS = {
  'v1/ConfigMap': ['kubernetes-models/v1/ConfigMap', 'ConfigMap', 'IConfigMap'],
  'v1/Secret': ['kubernetes-models/v1/Secret', 'Secret', 'ISecret'],
  'v1/Service': ['kubernetes-models/v1/Service', 'Service', 'IService'],
  'apps/v1/DaemonSet': ['kubernetes-models/apps/v1/DaemonSet', 'DaemonSet', 'IDaemonSet'],
  'monitoring.coreos.com/v1/ServiceMonitor': [
    '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor',
    'ServiceMonitor',
    'IServiceMonitor',
  ],
};

const errors = [];
const docs = [];  // {file, index, doc}
const files = readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort();
if (files.length === 0) errors.push(`${dir}: no manifests`);
for (const f of files) {
  // YAML 1.1, as Kubernetes reads it (0440 is octal, yes/no are booleans).
  const parsed = YAML.parseAllDocuments(readFileSync(join(dir, f), 'utf8'), { version: '1.1' });
  parsed.forEach((d, index) => {
    for (const e of d.errors) errors.push(`${f}: ${e.message}`);
    const doc = d.toJS({ maxAliasCount: 100 });
    if (doc !== null) docs.push({ file: f, index, doc });
  });
}

// 1. The schemas.
for (const { file, doc } of docs) {
  const key = `${doc?.apiVersion}/${doc?.kind}`;
  if (!KINDS[key]) {
    errors.push(`${file}: ${key}: not a kind this check knows (add it to KINDS)`);
    continue;
  }
  const [module, cls] = KINDS[key];
  const Model = (await import(module))[cls];
  try {
    new Model(doc).validate();
  } catch (e) {
    errors.push(`${file}: ${doc.kind} ${doc.metadata?.name}: ${e.message}`);
  }
  if (doc.metadata?.namespace !== undefined) {
    errors.push(`${file}: metadata.namespace is set; the manifests are namespace-less (kubectl -n)`);
  }
}

// 2. Unknown fields, through tsc.
{
  const known = docs.filter(({ doc }) => KINDS[`${doc?.apiVersion}/${doc?.kind}`]);
  const imports = [...new Set(known.map(({ doc }) => `${doc.apiVersion}/${doc.kind}`))]
    .map((k) => `import type { ${KINDS[k][2]} as T${KINDS[k][1]} } from '${KINDS[k][0]}';`);
  const body = known.map(({ file, index, doc }, i) =>
    `// ${file} #${index}\nexport const doc${i}: T${doc.kind} = ${JSON.stringify(doc, null, 2)};`);
  mkdirSync(join(here, '.tmp'), { recursive: true });
  const tmp = mkdtempSync(join(here, '.tmp', 'k8s-'));
  try {
    writeFileSync(join(tmp, 'manifests.ts'), `${imports.join('\n')}\n\n${body.join('\n\n')}\n`);
    writeFileSync(join(tmp, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { strict: true, noEmit: true, target: 'es2022', module: 'esnext',
                         moduleResolution: 'bundler', skipLibCheck: true, types: [] },
      files: ['manifests.ts'],
    }));
    execFileSync(process.execPath, [join(here, 'node_modules/typescript/bin/tsc'), '-p',
                 join(tmp, 'tsconfig.json'), '--pretty', 'false'], { encoding: 'utf8', stdio: 'pipe' });
  } catch (e) {
    const out = `${e.stdout ?? ''}${e.stderr ?? ''}`.trim() || e.message;
    errors.push(`unknown or mistyped fields (tsc; "// FILE #N" above each document in manifests.ts):\n${out}`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

// 3. The files together.
const one = (kind) => {
  const found = docs.filter(({ doc }) => doc?.kind === kind);
  if (found.length !== 1) errors.push(`expected one ${kind}, found ${found.length}`);
  return found[0]?.doc;
};
const ds = one('DaemonSet');
const svc = one('Service');
const sm = one('ServiceMonitor');
const cm = one('ConfigMap');
const secret = one('Secret');
const subset = (a = {}, b = {}) => Object.entries(a).every(([k, v]) => b[k] === v);
const list = (x) => (Array.isArray(x) ? x : []);  // a malformed field is reported by 1. and 2.
const pod = ds?.spec?.template?.spec ?? {};
const podLabels = ds?.spec?.template?.metadata?.labels ?? {};
const containers = list(pod.containers);
const yolod = containers.find((c) => c.name === 'yolod') ?? containers[0] ?? {};
const secretKeys = Object.keys({ ...(secret?.stringData ?? {}), ...(secret?.data ?? {}) });

if (ds && !subset(ds.spec?.selector?.matchLabels, podLabels)) errors.push('DaemonSet: selector does not match the pod template labels');
if (svc && !subset(svc.spec?.selector, podLabels)) errors.push('Service: selector does not match the DaemonSet pods');
if (svc?.spec?.type !== 'ClusterIP') errors.push('Service: type is not ClusterIP');
const containerPorts = new Map(list(yolod.ports).map((p) => [p.name, p.containerPort]));
const svcPorts = new Map(list(svc?.spec?.ports).map((p) => [p.name, p]));
for (const [name, port] of [['grpc', 50051], ['metrics', 9464]]) {
  if (svcPorts.get(name)?.port !== port) errors.push(`Service: no port ${name} ${port}`);
  const target = svcPorts.get(name)?.targetPort;
  if (target !== undefined && !containerPorts.has(target) && ![...containerPorts.values()].includes(target)) {
    errors.push(`Service: port ${name} targets ${target}, which the yolod container does not expose`);
  }
  if (containerPorts.get(name) !== port) errors.push(`DaemonSet: container port ${name} is not ${port}`);
}
if (sm) {
  if (!subset(sm.spec?.selector?.matchLabels, svc?.metadata?.labels)) errors.push('ServiceMonitor: selector does not match the Service labels');
  for (const ep of list(sm.spec?.endpoints)) {
    if (!svcPorts.has(ep.port)) errors.push(`ServiceMonitor: endpoint port ${ep.port} is not a port of the Service`);
    if (ep.scheme !== 'https') errors.push('ServiceMonitor: scheme is not https');
    if (ep.tlsConfig?.insecureSkipVerify !== false) errors.push('ServiceMonitor: tlsConfig.insecureSkipVerify is not false');
    for (const [what, ref] of [['tlsConfig.ca.secret', ep.tlsConfig?.ca?.secret], ['bearerTokenSecret', ep.bearerTokenSecret]]) {
      if (ref?.name !== secret?.metadata?.name || !secretKeys.includes(ref?.key)) {
        errors.push(`ServiceMonitor: ${what} is not a key of Secret ${secret?.metadata?.name}`);
      }
    }
  }
}
for (const k of ['tls.crt', 'tls.key', 'ca.crt', 'token']) {
  if (!secretKeys.includes(k)) errors.push(`Secret: no key ${k}`);
}
for (const [k, v] of Object.entries(secret?.stringData ?? {})) {
  if (!String(v).includes('REPLACE_ME')) errors.push(`Secret: ${k} is not a REPLACE_ME placeholder (an example holds no key)`);
}
if (secret?.data && Object.keys(secret.data).length > 0) errors.push('Secret: use stringData placeholders, not data');

// The config file yolod reads, and its keys: those that server/daemon/daemon_config.cc knows.
let config = {};
try {
  config = YAML.parse(cm?.data?.['yolod.yaml'] ?? '') ?? {};
} catch (e) {
  errors.push(`ConfigMap: yolod.yaml: ${e.message}`);
}
const parser = join(repo, 'server/daemon/daemon_config.cc');
if (existsSync(parser)) {
  const keys = new Set([...readFileSync(parser, 'utf8').matchAll(/key == "([a-z_]+)"/g)].map((m) => m[1]));
  for (const k of Object.keys(config)) if (!keys.has(k)) errors.push(`ConfigMap: yolod.yaml: yolod knows no key ${k}`);
} else {
  console.error(`check_k8s: note: no ${parser}: the config's keys are not checked`);
}
if (config.listen !== '0.0.0.0:50051') errors.push('ConfigMap: listen is not 0.0.0.0:50051');
if (config.metrics_listen !== '0.0.0.0:9464') errors.push('ConfigMap: metrics_listen is not 0.0.0.0:9464');

// yolod's arguments: the config, and TLS and a token (it refuses the pod's address without).
const args = [...list(yolod.command), ...list(yolod.args)];
const arg = (f) => args[args.indexOf(f) + 1];
const mounts = list(yolod.volumeMounts);
const volumes = new Map(list(pod.volumes).map((v) => [v.name, v]));
const mountOf = (path) => mounts.find((m) => path === m.mountPath || dirname(path) === m.mountPath);
const cfgMount = mountOf(arg('--config') ?? '');
if (!cfgMount || volumes.get(cfgMount.name)?.configMap?.name !== cm?.metadata?.name) {
  errors.push('DaemonSet: --config is not the ConfigMap mounted');
}
for (const f of ['--tls-cert', '--tls-key']) {
  const m = mountOf(arg(f) ?? '');
  if (!args.includes(f) || !m || volumes.get(m.name)?.secret?.secretName !== secret?.metadata?.name ||
      !secretKeys.includes(basename(arg(f)))) {
    errors.push(`DaemonSet: ${f} is not a file of the Secret's volume`);
  }
}
const tokenFile = arg('--token-file');
const tokenMount = args.includes('--token-file') ? mountOf(tokenFile) : undefined;
if (!tokenMount) {
  errors.push('DaemonSet: --token-file is not a file of a mounted volume');
} else if (volumes.get(tokenMount.name)?.secret && pod.securityContext?.fsGroup !== undefined) {
  errors.push('DaemonSet: --token-file is in a Secret volume that fsGroup makes group-readable; yolod refuses it');
}
for (const p of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
  const probe = yolod[p];
  if (!probe && p !== 'startupProbe') errors.push(`DaemonSet: no ${p}`);
  if (probe?.grpc && args.includes('--tls-cert')) {
    errors.push(`DaemonSet: ${p} is Kubernetes' gRPC probe, which is plaintext; yolod serves TLS there`);
  }
}

// Security and placement.
if (pod.securityContext?.runAsNonRoot !== true) errors.push('DaemonSet: pod securityContext.runAsNonRoot is not true');
for (const c of [...list(pod.initContainers), ...containers]) {
  const sc = c.securityContext ?? {};
  if (sc.readOnlyRootFilesystem !== true) errors.push(`container ${c.name}: readOnlyRootFilesystem is not true`);
  if (sc.allowPrivilegeEscalation !== false) errors.push(`container ${c.name}: allowPrivilegeEscalation is not false`);
  if (!list(sc.capabilities?.drop).includes('ALL')) errors.push(`container ${c.name}: capabilities do not drop ALL`);
  if (sc.runAsNonRoot === false || sc.runAsUser === 0) errors.push(`container ${c.name}: runs as root`);
}
if (pod.nodeSelector?.['nvidia.com/gpu.present'] !== 'true') errors.push('DaemonSet: nodeSelector nvidia.com/gpu.present is not "true"');
if (!list(pod.tolerations).some((t) => t.key === 'nvidia.com/gpu')) errors.push('DaemonSet: no toleration for nvidia.com/gpu');
const res = yolod.resources ?? {};
for (const [kind, r] of [['requests', res.requests], ['limits', res.limits]]) {
  for (const k of ['cpu', 'memory']) if (r?.[k] === undefined) errors.push(`DaemonSet: yolod has no ${kind}.${k}`);
  if (String(r?.['nvidia.com/gpu']) !== '1') errors.push(`DaemonSet: yolod ${kind} nvidia.com/gpu is not 1`);
}
if (!mounts.some((m) => m.mountPath === config.state_dir && (volumes.get(m.name)?.hostPath || volumes.get(m.name)?.emptyDir))) {
  errors.push(`DaemonSet: the state dir ${config.state_dir} is not a hostPath or emptyDir volume`);
}

if (errors.length > 0) {
  console.error(`check_k8s: ${dir}:`);
  for (const e of errors) console.error(`  ${e}`);
  process.exit(1);
}
console.log(`check_k8s: ${dir}: valid (${docs.map(({ doc }) => doc.kind).join(', ')})`);
