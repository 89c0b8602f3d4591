// Checks what check_compose.sh hands it:
//   node check_compose.mjs compose CONFIG.yml [gpu]   the output of `docker-compose config`
//   node check_compose.mjs dockerfile Dockerfile       lint (dockerfile-utils) and structure
// Exit 1 with the problems on stderr.
import { readFileSync } from 'node:fs';
import { DockerfileParser } from 'dockerfile-ast';
import { validate } from 'dockerfile-utils';
import YAML from 'yaml';

const [mode, file, variant] = process.argv.slice(2);
const errors = [];
const text = readFileSync(file, 'utf8');

function checkCompose(config, gpu) {
  const services = config?.services ?? {};
  for (const name of ['yolod', 'prometheus', 'alertmanager', 'grafana']) {
    if (!services[name]) errors.push(`service ${name} is missing`);
  }
  // Every published port on the loopback only.
  for (const [name, s] of Object.entries(services)) {
    for (const p of s.ports ?? []) {
      const hostIp = typeof p === 'object' ? p.host_ip : String(p).split(':').length === 3 ? String(p).split(':')[0] : '';
      if (hostIp !== '127.0.0.1') errors.push(`${name}: port ${JSON.stringify(p)} is not bound to 127.0.0.1`);
    }
  }
  const y = services.yolod ?? {};
  const cmd = Array.isArray(y.command) ? y.command : String(y.command ?? '').split(/\s+/);
  const flag = (f) => {
    const i = cmd.indexOf(f);
    return i >= 0 ? cmd[i + 1] : cmd.find((c) => c.startsWith(`${f}=`))?.slice(f.length + 1);
  };
  if (flag('--listen') !== '127.0.0.1:50051') errors.push('yolod: not --listen 127.0.0.1:50051');
  if (flag('--metrics-listen') !== '127.0.0.1:9464') errors.push('yolod: not --metrics-listen 127.0.0.1:9464');
  if (flag('--state-dir') !== '/var/lib/yolod') errors.push('yolod: not --state-dir /var/lib/yolod');
  if (y.build?.dockerfile !== 'deploy/docker/Dockerfile') errors.push('yolod: build.dockerfile is not deploy/docker/Dockerfile');
  const state = (y.volumes ?? []).find((v) => (typeof v === 'object' ? v.target : String(v).split(':')[1]) === '/var/lib/yolod');
  if (!state || (typeof state === 'object' && state.type !== 'volume')) errors.push('yolod: /var/lib/yolod is not a named volume');
  if (!y.healthcheck?.test?.join(' ').includes('yoloctl')) errors.push('yolod: no yoloctl healthcheck');
  const p = services.prometheus ?? {};
  if (p.network_mode !== 'service:yolod') errors.push('prometheus: network_mode is not service:yolod');
  const mounts = (s) => (s.volumes ?? []).map((v) => (typeof v === 'object' ? `${v.source}:${v.target}:${v.read_only ? 'ro' : 'rw'}` : String(v)));
  const mounted = (s, suffix, target) => mounts(s).some((m) => m.includes(suffix) && m.includes(`:${target}:ro`));
  if (!mounted(p, '/deploy/prometheus/prometheus.yml', '/etc/prometheus/prometheus.yml')) errors.push('prometheus: deploy/prometheus/prometheus.yml is not mounted read-only');
  if (!mounted(p, '/deploy/prometheus/rules', '/etc/prometheus/rules')) errors.push('prometheus: deploy/prometheus/rules is not mounted read-only');
  if (!mounted(services.alertmanager ?? {}, '/deploy/alertmanager/alertmanager.yml', '/etc/alertmanager/alertmanager.yml')) errors.push('alertmanager: deploy/alertmanager/alertmanager.yml is not mounted read-only');
  const g = services.grafana ?? {};
  if (!mounted(g, '/deploy/grafana/provisioning', '/etc/grafana/provisioning')) errors.push('grafana: deploy/grafana/provisioning is not mounted read-only');
  if (!mounted(g, '/deploy/grafana/dashboards', '/var/lib/grafana/dashboards')) errors.push('grafana: deploy/grafana/dashboards is not mounted read-only');
  const aliases = Object.values(y.networks ?? {}).flatMap((n) => n?.aliases ?? []);
  if (!aliases.includes('prometheus')) errors.push('yolod: no network alias "prometheus" (Grafana\'s data source URL)');
  const devices = y.deploy?.resources?.reservations?.devices ?? [];
  const nvidia = devices.some((d) => d.driver === 'nvidia' && (d.capabilities ?? []).includes('gpu'));
  if (gpu && !nvidia) errors.push('GPU variant: yolod reserves no nvidia device with capabilities [gpu]');
  if (!gpu && devices.length > 0) errors.push('the plain file reserves devices: GPUs belong in docker-compose.gpu.yml');
}

function checkDockerfile() {
  for (const d of validate(text)) {
    errors.push(`line ${d.range.start.line + 1}: ${d.message} (dockerfile-utils ${d.severity === 1 ? 'error' : 'warning'} ${d.code})`);
  }
  const df = DockerfileParser.parse(text);
  const from = df.getFROMs();
  if (from.length < 2) errors.push('not multi-stage (a build stage and a runtime stage)');
  for (const f of from) {
    if (f.getImageName() !== 'debian' || f.getImageTag() !== '12') errors.push(`line ${f.getRange().start.line + 1}: FROM ${f.getImage()} is not debian:12`);
  }
  // Instructions of the last stage, and all the RUN lines of the build stages.
  const lastFrom = from.at(-1)?.getRange().start.line ?? 0;
  const all = df.getInstructions();
  const last = all.filter((i) => i.getRange().start.line >= lastFrom);
  const runs = all.filter((i) => i.getKeyword() === 'RUN' && i.getRange().start.line < lastFrom).map((i) => i.getArgumentsContent() ?? '');
  const need = (re, what) => {
    if (!runs.some((r) => re.test(r))) errors.push(`the build stage does not ${what}`);
  };
  need(/scripts\/setup\.sh/, 'run scripts/setup.sh');
  need(/scripts\/build\.sh/, 'run scripts/build.sh');
  need(/cmake --install build --prefix \/opt\/yolod/, 'run cmake --install build --prefix /opt/yolod');
  const kw = (k) => last.filter((i) => i.getKeyword() === k);
  const copied = last.some((i) => i.getKeyword() === 'COPY' && i.getFromFlag?.()?.getValue() === 'build' &&
    (i.getArgumentsContent() ?? '').startsWith('/opt/yolod'));
  if (!copied) errors.push('the runtime stage does not COPY --from=build /opt/yolod');
  const user = kw('USER').at(-1)?.getArgumentsContent()?.split(':')[0];
  if (!user || user === 'root' || user === '0') errors.push('the runtime stage does not end as a non-root USER');
  if (!kw('VOLUME').some((i) => (i.getArgumentsContent() ?? '').includes('/var/lib/yolod'))) errors.push('no VOLUME /var/lib/yolod');
  for (const k of ['EXPOSE', 'HEALTHCHECK', 'ENTRYPOINT']) {
    if (kw(k).length === 0) errors.push(`the runtime stage has no ${k}`);
  }
  if (!(kw('ENTRYPOINT').at(-1)?.getArgumentsContent() ?? '').includes('yolod')) errors.push('ENTRYPOINT is not yolod');
  if (!last.some((i) => i.getKeyword() === 'RUN' && /useradd .*yolod/.test(i.getArgumentsContent() ?? ''))) errors.push('the runtime stage creates no user yolod');
}

if (mode === 'compose') {
  checkCompose(YAML.parse(text), variant === 'gpu');
} else if (mode === 'dockerfile') {
  checkDockerfile();
} else {
  console.error('usage: check_compose.mjs compose CONFIG.yml [gpu] | dockerfile FILE');
  process.exit(2);
}
if (errors.length > 0) {
  console.error(`${file}:`);
  for (const e of errors) console.error(`  ${e}`);
  process.exit(1);
}
