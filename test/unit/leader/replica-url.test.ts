/** Which addresses a polling replica may register: bare http(s) origins on the poller's own address. */
import { expect } from 'chai';
import { replicaUrlFromPoll } from '../../../leader/replica-url.js';

function verdict(raw: string, poller = '127.0.0.1', allowed: string[] = []): string {
  const r = replicaUrlFromPoll(raw, poller, allowed);
  return 'url' in r ? r.url : 'refused';
}

describe('leader/replica-url', () => {
  it('registers a bare http(s)://host:port on the poller own address, in one canonical form', () => {
    expect(verdict('http://127.0.0.1:8081')).to.equal('http://127.0.0.1:8081');
    expect(verdict('http://127.0.0.1:8081/')).to.equal('http://127.0.0.1:8081');
    expect(verdict('https://10.0.0.7:443', '::ffff:10.0.0.7')).to.equal('https://10.0.0.7:443');
    expect(verdict('http://[::1]:8081', '::1')).to.equal('http://[::1]:8081');
    expect(verdict('http://[0:0:0:0:0:0:0:1]:8081', '::1')).to.equal('http://[::1]:8081');
  });

  it('refuses any other scheme, a path, a query, a fragment, credentials or a missing port', () => {
    for (const raw of [
      'data:text/plain,hello',
      'file:///etc/passwd',
      'ftp://127.0.0.1:21',
      'http://127.0.0.1:8081/any/path',
      'http://127.0.0.1:8081/any/path?x=',
      'http://127.0.0.1:8081?x=1',
      'http://127.0.0.1:8081#frag',
      'http://user:pass@127.0.0.1:8081',
      'http://@127.0.0.1:8081',
      'http://127.0.0.1',
      'http://127.0.0.1:0',
      'http://127.0.0.1:70000',
      'http://127.0.0.1:8081/..',
      'http://127.0.0.1:8081\\x',
      ' http://127.0.0.1:8081',
      'http://127.0.0.1:8081\n',
      '',
    ]) {
      expect(verdict(raw), JSON.stringify(raw)).to.equal('refused');
    }
  });

  it('refuses a host other than the poller own address unless REPLICA_URL_HOSTS lists it or says *', () => {
    expect(verdict('http://10.0.0.9:8081', '10.0.0.7')).to.equal('refused');
    expect(verdict('http://169.254.169.254:80', '10.0.0.7')).to.equal('refused');
    expect(verdict('http://localhost:8081', '127.0.0.1')).to.equal('refused');
    // 0x7f.1 is 127.0.0.1 to the URL parser: compared in that form, so it cannot dodge the list.
    expect(verdict('http://0x7f.1:8081', '10.0.0.7')).to.equal('refused');
    expect(verdict('http://0x7f.1:8081', '127.0.0.1')).to.equal('http://127.0.0.1:8081');
    expect(verdict('http://10.0.0.9:8081', undefined)).to.equal('refused');
    expect(
      verdict('http://Replica-0.Promotions.svc:8081', '10.0.0.7', ['replica-0.promotions.svc']),
    ).to.equal('http://replica-0.promotions.svc:8081');
    expect(verdict('http://10.0.0.9:8081', '10.0.0.7', ['*'])).to.equal('http://10.0.0.9:8081');
    // Even `*` takes only bare origins.
    expect(verdict('http://10.0.0.9:8081/x', '10.0.0.7', ['*'])).to.equal('refused');
  });
});
