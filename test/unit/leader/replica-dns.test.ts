import { expect } from 'chai';
import { type Resolve4, resolveReplicaUrls } from '../../../leader/replica-dns.js';

const failing =
  (code: string): Resolve4 =>
  async () => {
    throw Object.assign(new Error(`queryA ${code} replicas`), { code });
  };

describe('leader/replica-dns', () => {
  it('turns each A record into http://IP:PORT, sorted, without repeats', async () => {
    const asked: string[] = [];
    const resolve: Resolve4 = async (host) => {
      asked.push(host);
      return ['10.0.0.9', '10.0.0.10', '10.0.0.9'];
    };
    const urls = await resolveReplicaUrls({ host: 'replicas-headless.promotions.svc', port: 8081 }, resolve);
    expect(urls).to.deep.equal(['http://10.0.0.10:8081', 'http://10.0.0.9:8081']);
    expect(asked).to.deep.equal(['replicas-headless.promotions.svc']);
  });

  it('answers no replicas for a name without addresses, and throws on a DNS failure', async () => {
    const target = { host: 'replicas', port: 8081 };
    expect(await resolveReplicaUrls(target, failing('ENOTFOUND'))).to.deep.equal([]);
    expect(await resolveReplicaUrls(target, failing('ENODATA'))).to.deep.equal([]);
    let err: unknown;
    try {
      await resolveReplicaUrls(target, failing('ETIMEOUT'));
    } catch (e) {
      err = e;
    }
    expect((err as NodeJS.ErrnoException).code).to.equal('ETIMEOUT');
  });
});
