import { expect } from 'chai';
import { ConfigError, DEFAULTS, loadLeaderConfig, loadReplicaConfig } from '../../../common/config.js';

const TOKENS = { LEADER_TOKEN: 'l'.repeat(16), REPLICA_TOKEN: 'r'.repeat(16) };

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(ConfigError);
    return (err as Error).message;
  }
  return expect.fail('expected a ConfigError') as never;
}

describe('common/config', () => {
  it('applies the defaults and freezes the result', () => {
    const c = loadLeaderConfig(TOKENS);
    expect(c).to.include({
      port: DEFAULTS.leaderPort,
      maxBadRows: 0,
      minRowsRatio: 0.5,
      keepVersions: 5,
      replicaExpiryMs: 600_000,
      host: '127.0.0.1',
    });
    expect(Object.isFrozen(c)).to.equal(true);
    expect(loadReplicaConfig(TOKENS)).to.include({
      port: 8081,
      serveMode: 'auto',
      leaderUrl: 'http://127.0.0.1:8080',
    });
  });

  it('reads values with units and lists', () => {
    const c = loadLeaderConfig({
      ...TOKENS,
      BUILD_MEMORY_BYTES: '512MiB',
      REPLICAS: 'http://a:1/, http://b:2',
      PORT: '0',
    });
    expect(c.buildMemoryBytes).to.equal(512 * 1024 * 1024);
    expect(c.replicas).to.deep.equal(['http://a:1', 'http://b:2']);
    expect(c.port).to.equal(0);
  });

  it('puts uploads and the inbox under DATA_DIR unless told otherwise; an empty INBOX_DIR turns the inbox off', () => {
    const c = loadLeaderConfig({ ...TOKENS, DATA_DIR: '/var/lib/promotions' });
    expect(c).to.include({
      uploadDir: '/var/lib/promotions/uploads',
      inboxDir: '/var/lib/promotions/inbox',
      maxHeaderBytes: 16 * 1024,
      headersTimeoutMs: 10_000,
      idleTimeoutMs: 60_000,
    });
    expect(loadLeaderConfig({ ...TOKENS, INBOX_DIR: '' }).inboxDir).to.equal('');
    expect(loadLeaderConfig({ ...TOKENS, INBOX_DIR: '/drop', UPLOAD_DIR: '/big' })).to.include({
      inboxDir: '/drop',
      uploadDir: '/big',
    });
    expect(refusal(() => loadLeaderConfig({ ...TOKENS, INBOX_KEEP_FILES: '0' }))).to.match(
      /^INBOX_KEEP_FILES/,
    );
    expect(refusal(() => loadReplicaConfig({ ...TOKENS, MAX_HEADER_BYTES: '100' }))).to.match(
      /^MAX_HEADER_BYTES/,
    );
  });

  it('reads REPLICAS_DNS as a host name and a port', () => {
    expect(loadLeaderConfig(TOKENS).replicasDns).to.equal(null);
    expect(
      loadLeaderConfig({ ...TOKENS, REPLICAS_DNS: 'replicas-headless.promotions.svc:8081' }).replicasDns,
    ).to.deep.equal({ host: 'replicas-headless.promotions.svc', port: 8081 });
    for (const bad of [
      'replicas-headless',
      'http://replicas:8081',
      'replicas:0',
      'replicas:70000',
      ':8081',
    ]) {
      expect(
        refusal(() => loadLeaderConfig({ ...TOKENS, REPLICAS_DNS: bad })),
        bad,
      ).to.match(
        /^REPLICAS_DNS must be a DNS name and port like replicas-headless\.promotions\.svc:8081, got "/,
      );
    }
  });

  it('stops the leader when LEADER_TOKEN equals REPLICA_TOKEN, which every replica holds', () => {
    const same = 's'.repeat(20);
    expect(refusal(() => loadLeaderConfig({ LEADER_TOKEN: same, REPLICA_TOKEN: same }))).to.match(
      /^LEADER_TOKEN must differ from REPLICA_TOKEN/,
    );
    // A replica has no leader token to compare with.
    expect(loadReplicaConfig({ LEADER_TOKEN: same, REPLICA_TOKEN: same }).replicaToken).to.equal(same);
  });

  it('reads REPLICA_URL_HOSTS as a list of hosts, lower-cased, and refuses anything else', () => {
    expect(loadLeaderConfig(TOKENS).replicaUrlHosts).to.deep.equal([]);
    expect(
      loadLeaderConfig({ ...TOKENS, REPLICA_URL_HOSTS: ' Replica-0.svc , 10.0.0.7,::1,*' }).replicaUrlHosts,
    ).to.deep.equal(['replica-0.svc', '10.0.0.7', '::1', '*']);
    for (const bad of ['http://x:1', 'a/b', 'host:8081x', 'a b']) {
      expect(
        refusal(() => loadLeaderConfig({ ...TOKENS, REPLICA_URL_HOSTS: bad })),
        bad,
      ).to.match(/^REPLICA_URL_HOSTS must list host names or IP addresses/);
    }
  });

  it('stops start-up on a malformed value, naming the variable', () => {
    expect(refusal(() => loadLeaderConfig({ ...TOKENS, PORT: 'eighty' }))).to.match(
      /^PORT must be a whole number/,
    );
    expect(refusal(() => loadLeaderConfig({ ...TOKENS, PORT: '70000' }))).to.match(/^PORT must be between/);
    expect(refusal(() => loadLeaderConfig({ ...TOKENS, KEEP_VERSIONS: '1' }))).to.match(/^KEEP_VERSIONS/);
    expect(refusal(() => loadLeaderConfig({ ...TOKENS, REPLICA_EXPIRY_MS: '10m' }))).to.match(
      /^REPLICA_EXPIRY_MS/,
    );
    expect(refusal(() => loadLeaderConfig({ ...TOKENS, MIN_ROWS_RATIO: '2' }))).to.match(/^MIN_ROWS_RATIO/);
    expect(refusal(() => loadLeaderConfig({ ...TOKENS, BUILD_MEMORY_BYTES: 'lots' }))).to.match(
      /^BUILD_MEMORY_BYTES/,
    );
    expect(refusal(() => loadLeaderConfig({ ...TOKENS, REPLICAS: 'ftp://x' }))).to.match(
      /^REPLICAS must be an http/,
    );
    expect(refusal(() => loadLeaderConfig({ ...TOKENS, LOG_LEVEL: 'loud' }))).to.match(/^LOG_LEVEL/);
    expect(refusal(() => loadLeaderConfig({ REPLICA_TOKEN: 'r'.repeat(16) }))).to.match(
      /^LEADER_TOKEN must be set/,
    );
    expect(refusal(() => loadReplicaConfig({ REPLICA_TOKEN: 'short' }))).to.match(
      /^REPLICA_TOKEN must be set/,
    );
    expect(refusal(() => loadReplicaConfig({ ...TOKENS, SERVE_MODE: 'fast' }))).to.match(/^SERVE_MODE/);
    expect(refusal(() => loadReplicaConfig({ ...TOKENS, LEADER_URL: 'nope' }))).to.match(/^LEADER_URL/);
    expect(refusal(() => loadReplicaConfig({ ...TOKENS, MAX_BATCH_IDS: '0' }))).to.match(/^MAX_BATCH_IDS/);
    expect(refusal(() => loadReplicaConfig({ ...TOKENS, READ_MAX_AGE_S: '1h' }))).to.match(
      /^READ_MAX_AGE_S must be a whole number/,
    );
    for (const [bad, why] of [
      ['1/3', /power of two/],
      ['4/4', /from 0 to 3/],
      ['0/128', /power of two from 1 to 64/],
      ['two', /expected k\/S/],
    ] as const) {
      expect(
        refusal(() => loadReplicaConfig({ ...TOKENS, SHARD: bad })),
        bad,
      ).to.match(/^SHARD must be k\/S/);
      expect(
        refusal(() => loadReplicaConfig({ ...TOKENS, SHARD: bad })),
        bad,
      ).to.match(why);
    }
  });

  it('reads SHARD as k of S; unset serves the whole data set', () => {
    expect(loadReplicaConfig(TOKENS).shard).to.equal(null);
    expect(loadReplicaConfig({ ...TOKENS, SHARD: '3/8' }).shard).to.deep.equal({
      index: 3,
      count: 8,
      bits: 3,
    });
  });

  it('reads the batch limit, and READ_MAX_AGE_S only when set', () => {
    expect(loadReplicaConfig(TOKENS)).to.include({ maxBatchIds: 1000, readMaxAgeS: null });
    expect(loadReplicaConfig({ ...TOKENS, READ_MAX_AGE_S: '' }).readMaxAgeS).to.equal(null);
    expect(loadReplicaConfig({ ...TOKENS, READ_MAX_AGE_S: '0', MAX_BATCH_IDS: '50' })).to.include({
      readMaxAgeS: 0,
      maxBatchIds: 50,
    });
    expect(loadReplicaConfig({ ...TOKENS, READ_MAX_AGE_S: '300' }).readMaxAgeS).to.equal(300);
  });

  it('refuses a setting set to the empty string (PORT=) instead of taking its default, naming it', () => {
    const leaderOnly = [
      'MAX_BAD_ROWS',
      'BUILD_MEMORY_BYTES',
      'MIN_ROWS_RATIO',
      'KEEP_VERSIONS',
      'UPLOAD_DIR',
    ];
    const both = ['PORT', 'HOST', 'DATA_DIR', 'LOG_LEVEL', 'IDLE_TIMEOUT_MS', 'SHUTDOWN_TIMEOUT_MS'];
    for (const name of [...both, ...leaderOnly]) {
      expect(
        refusal(() => loadLeaderConfig({ ...TOKENS, [name]: '' })),
        name,
      ).to.match(new RegExp(`^${name} is set but empty: unset it for the default`));
    }
    for (const name of [...both, 'SYNC_INTERVAL_MS', 'SERVE_MODE', 'MEMORY_BUDGET_BYTES', 'LEADER_URL']) {
      expect(
        refusal(() => loadReplicaConfig({ ...TOKENS, [name]: '' })),
        name,
      ).to.include(`${name} is set but empty`);
    }
    expect(refusal(() => loadLeaderConfig({ ...TOKENS, PORT: '' }))).to.include(
      `default (${DEFAULTS.leaderPort})`,
    );
    // Where the default is itself empty, empty means the same: none.
    expect(loadLeaderConfig({ ...TOKENS, REPLICAS: '', REPLICAS_DNS: '' }).replicas).to.deep.equal([]);
    expect(loadReplicaConfig({ ...TOKENS, ADVERTISE_URL: '', SHARD: '' }).advertiseUrl).to.equal('');
  });
});
