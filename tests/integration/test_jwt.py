#!/usr/bin/env python3
"""JWT bearer tokens signed at test time (hmac for HS*, the openssl CLI for RS* and ES*):
every algorithm, expired, not yet valid, leeway, issuer, audience, wrong key, the algorithm
confusion attack, required claims (403), config errors; tokens never in the log."""

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GatherdTestCase, call, config, endpoint, main,  # noqa: E402
                     run_gatherd)

HASHES = {'256': hashlib.sha256, '384': hashlib.sha384, '512': hashlib.sha512}


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b'=').decode()


def openssl(*args, data=None):
    return subprocess.run(['openssl'] + list(args), input=data, capture_output=True,
                          check=True).stdout


def der_to_raw(der, size):
    """An ECDSA signature from DER (SEQUENCE of two INTEGERs) to JWS's R || S (RFC 7518 3.4)."""
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7f)
    out = b''
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        v = der[i + 2:i + 2 + n].lstrip(b'\0')
        out += v.rjust(size, b'\0')
        i += 2 + n
    return out


def sign(alg, key, claims, header=None):
    """@key: the HMAC secret (bytes), or the path of a PEM private key."""
    h = {'alg': alg, 'typ': 'JWT'}
    h.update(header or {})
    signing_input = (b64(json.dumps(h).encode()) + '.' + b64(json.dumps(claims).encode())).encode()
    bits = alg[2:]
    if alg.startswith('HS'):
        sig = hmac.new(key, signing_input, HASHES[bits]).digest()
    elif alg == 'none':
        sig = b''
    else:
        sig = openssl('dgst', '-sha' + bits, '-sign', key, data=signing_input)
        if alg.startswith('ES'):
            sig = der_to_raw(sig, {'256': 32, '384': 48}[bits])
    return signing_input.decode() + '.' + b64(sig)


class JwtTest(GatherdTestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix='gatherd-jwt-')
        cls.secret = b'0123456789abcdef0123456789abcdef-hmac'
        cls.secret_file = os.path.join(cls.tmp, 'secret')
        with open(cls.secret_file, 'wb') as f:
            f.write(cls.secret + b'\n')
        cls.keys = {}
        for name, opts in (('rsa', ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048']),
                           ('rsa2', ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048']),
                           ('p256', ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256']),
                           ('p384', ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-384'])):
            priv = os.path.join(cls.tmp, name + '.key')
            pub = os.path.join(cls.tmp, name + '.pub')
            openssl('genpkey', *opts, '-out', priv)
            openssl('pkey', '-in', priv, '-pubout', '-out', pub)
            cls.keys[name] = (priv, pub)

    def setUp(self):
        self.stub = self.start_stub()
        self.stub.add('/u', json={'id': 1})

    def start(self):
        def jwt(algs, key, **kw):
            d = {'algorithms': algs, 'key_file': key, 'issuer': 'https://issuer.example',
                 'audience': 'gatherd', 'leeway_s': 5}
            d.update(kw)
            return {'jwt': d}
        eps = [endpoint('/hs', {'u': call('s', '/u')},
                        auth=jwt(['HS256', 'HS384', 'HS512'], self.secret_file)),
               endpoint('/rs', {'u': call('s', '/u')},
                        auth=jwt(['RS256', 'RS384', 'RS512'], self.keys['rsa'][1])),
               endpoint('/es256', {'u': call('s', '/u')}, auth=jwt(['ES256'], self.keys['p256'][1])),
               endpoint('/es384', {'u': call('s', '/u')}, auth=jwt(['ES384'], self.keys['p384'][1])),
               endpoint('/me', {'u': call('s', '/users/{jwt.sub}/t/{jwt.tenant}?n={jwt.n}',
                                          headers={'x-user': '{jwt.sub}'})},
                        auth=jwt(['HS256'], self.secret_file)),
               endpoint('/scoped', {'u': call('s', '/u')},
                        auth=jwt(['RS256'], self.keys['rsa'][1],
                                 required_claims={'scope': 'profile:read', 'tenant': 'acme'}))]
        return self.start_gatherd(config(eps, {'s': self.stub}))

    @classmethod
    def jwk(cls, name, kid=None):
        """The public JWK of test key @name (RFC 7518 section 6), from the openssl CLI's text."""
        pub = cls.keys[name][1]
        if name.startswith('rsa'):
            mod = openssl('rsa', '-pubin', '-in', pub, '-modulus', '-noout').decode()
            n = bytes.fromhex(mod.strip().split('=', 1)[1])
            return {'kty': 'RSA', 'kid': kid or name, 'use': 'sig', 'n': b64(n), 'e': 'AQAB'}
        text = openssl('ec', '-pubin', '-in', pub, '-text', '-noout').decode()
        hexes = text.split('pub:', 1)[1].split('ASN1 OID')[0]
        point = bytes.fromhex(''.join(c for c in hexes if c in '0123456789abcdef'))
        size = (len(point) - 1) // 2
        crv = 'P-256' if size == 32 else 'P-384'
        return {'kty': 'EC', 'kid': kid or name, 'crv': crv, 'x': b64(point[1:1 + size]),
                'y': b64(point[1 + size:])}

    @classmethod
    def jwks_file(cls, name, keys):
        path = os.path.join(cls.tmp, name + '.jwks')
        with open(path, 'w') as f:
            json.dump({'keys': [{k: v for k, v in key.items() if v is not None}
                                for key in keys]}, f)
        return path

    def test_jwks(self):
        """kid selects the key of a JWK Set; keys of other types and "enc" keys are skipped."""
        rs = self.jwks_file('rs', [{'kty': 'oct', 'kid': 'h', 'k': b64(self.secret)},
                                   self.jwk('rsa', 'one'), self.jwk('rsa2', 'two'),
                                   dict(self.jwk('rsa', 'enc'), use='enc')])
        es = self.jwks_file('es', [self.jwk('p256', 'p256'), self.jwk('p384', 'p384'),
                                   self.jwk('rsa', 'r')])
        hs = self.jwks_file('hs', [{'kty': 'oct', 'kid': 'h1', 'k': b64(self.secret)}])
        eps = [endpoint('/rs', {'u': call('s', '/u')},
                        auth={'jwt': {'algorithms': ['RS256', 'RS512'], 'jwks_file': rs}}),
               endpoint('/es', {'u': call('s', '/u')},
                        auth={'jwt': {'algorithms': ['ES256', 'ES384'], 'jwks_file': es}}),
               endpoint('/hs', {'u': call('s', '/u')},
                        auth={'jwt': {'algorithms': ['HS384'], 'jwks_file': hs}})]
        gd = self.start_gatherd(config(eps, {'s': self.stub}))
        c = self.claims()
        for path, alg, key, kid in (('/rs', 'RS256', self.keys['rsa'][0], 'one'),
                                    ('/rs', 'RS512', self.keys['rsa2'][0], 'two'),
                                    ('/es', 'ES256', self.keys['p256'][0], 'p256'),
                                    ('/es', 'ES384', self.keys['p384'][0], 'p384'),
                                    ('/hs', 'HS384', self.secret, 'h1')):
            st, _, body, _ = self.bearer(gd, path, sign(alg, key, c, {'kid': kid}))
            self.assertEqual(st, 200, (path, alg, body))
        for path, alg, key, header, why in (
                ('/rs', 'RS256', self.keys['rsa'][0], {'kid': 'two'},
                 "the token's signature is not valid"),
                ('/rs', 'RS256', self.keys['rsa'][0], {'kid': 'enc'},
                 "the token's key (kid) is not known"),
                ('/rs', 'RS256', self.keys['rsa'][0], {'kid': 'h'},
                 "the token's key (kid) is not known"),
                ('/rs', 'RS256', self.keys['rsa'][0], {}, 'the token names no key (kid)'),
                ('/es', 'ES256', self.keys['p256'][0], {'kid': 'nope'},
                 "the token's key (kid) is not known")):
            self.assertRefused(gd, path, sign(alg, key, c, header), 401, why)

    def claims(self, **kw):
        now = int(time.time())
        c = {'sub': 'user-7', 'iss': 'https://issuer.example', 'aud': 'gatherd',
             'iat': now, 'exp': now + 300}
        c.update(kw)
        return {k: v for k, v in c.items() if v is not None}

    def bearer(self, gd, path, token):
        return gd.get(path, {'Authorization': 'Bearer ' + token})

    def assertRefused(self, gd, path, token, status, description):
        st, h, body, _ = self.bearer(gd, path, token) if token is not None else gd.get(path)
        doc = self.assertJsonError(st, h, body, status)
        self.assertEqual(doc['message'], description, body)
        error = 'insufficient_scope' if status == 403 else 'invalid_token'
        self.assertEqual(h.get('WWW-Authenticate'),
                         'Bearer realm="gatherd", error="%s", error_description="%s"'
                         % (error, description))
        return doc

    def test_every_algorithm(self):
        gd = self.start()
        tokens = []
        for alg, path, key in (('HS256', '/hs', self.secret), ('HS384', '/hs', self.secret),
                               ('HS512', '/hs', self.secret),
                               ('RS256', '/rs', self.keys['rsa'][0]),
                               ('RS384', '/rs', self.keys['rsa'][0]),
                               ('RS512', '/rs', self.keys['rsa'][0]),
                               ('ES256', '/es256', self.keys['p256'][0]),
                               ('ES384', '/es384', self.keys['p384'][0])):
            tok = sign(alg, key, self.claims())
            tokens.append(tok)
            st, _, body, _ = self.bearer(gd, path, tok)
            self.assertEqual(st, 200, (alg, body))
            self.assertEqual(json.loads(body), {'u': {'id': 1}})
            # the same token with its signature's last byte changed
            bad = tok[:-2] + ('A' if tok[-2] != 'A' else 'B') + tok[-1]
            self.assertRefused(gd, path, bad, 401, "the token's signature is not valid")
        # an algorithm of another endpoint's family
        self.assertRefused(gd, '/hs', tokens[3], 401, "the token's algorithm is not accepted")
        self.assertRefused(gd, '/es256', tokens[7], 401, "the token's algorithm is not accepted")
        log = gd.log()
        for tok in tokens:
            self.assertNotIn(tok.split('.')[2], log)
            self.assertNotIn(tok.split('.')[1], log)

    def test_refusals(self):
        gd = self.start()
        rsa = self.keys['rsa'][0]
        st, h, body, _ = gd.get('/rs')
        doc = self.assertJsonError(st, h, body, 401, 'unauthorized')
        self.assertEqual(doc['message'], 'a bearer token is required')
        self.assertEqual(h.get('WWW-Authenticate'), 'Bearer realm="gatherd"')
        now = int(time.time())
        for claims, why in (
                (self.claims(exp=now - 60), 'the token has expired'),
                (self.claims(exp=None), 'the token has no expiry time (exp)'),
                (self.claims(nbf=now + 60), 'the token is not valid yet'),
                (self.claims(aud='someone-else'), 'the token is not meant for this audience'),
                (self.claims(aud=None), 'the token is not meant for this audience'),
                (self.claims(iss='https://evil.example'), "the token's issuer is not accepted")):
            self.assertRefused(gd, '/rs', sign('RS256', rsa, claims), 401, why)
        # within the leeway (5 s), and an audience list
        for claims in (self.claims(exp=now - 2), self.claims(nbf=now + 2),
                       self.claims(aud=['other', 'gatherd'])):
            self.assertEqual(self.bearer(gd, '/rs', sign('RS256', rsa, claims))[0], 200, claims)
        # another key; alg none; HS256 with the RSA public key as the secret (RFC 8725 2.1)
        self.assertRefused(gd, '/rs', sign('RS256', self.keys['rsa2'][0], self.claims()), 401,
                           "the token's signature is not valid")
        self.assertRefused(gd, '/rs', sign('none', None, self.claims()), 401,
                           "the token's algorithm is not accepted")
        with open(self.keys['rsa'][1], 'rb') as f:
            pem = f.read()
        self.assertRefused(gd, '/rs', sign('HS256', pem, self.claims()), 401,
                           "the token's algorithm is not accepted")
        for header in ('Basic dXNlcjpwdw==', 'Bearer', 'Bearer a b', 'Bearer !!!'):
            st, h, body, _ = gd.get('/rs', {'Authorization': header})
            self.assertJsonError(st, h, body, 401, 'unauthorized')
            self.assertIn('error="invalid_token"', h.get('WWW-Authenticate'))
        # required claims: 403; "scope" is a space-separated list
        ok = self.claims(scope='email profile:read', tenant='acme')
        self.assertEqual(self.bearer(gd, '/scoped', sign('RS256', rsa, ok))[0], 200)
        for claims, name in ((self.claims(scope='profile:write', tenant='acme'), 'scope'),
                             (self.claims(scope='profile:readx', tenant='acme'), 'scope'),
                             (self.claims(tenant='acme'), 'scope'),
                             (self.claims(scope='profile:read', tenant='other'), 'tenant'),
                             (self.claims(scope='profile:read'), 'tenant')):
            doc = self.assertRefused(gd, '/scoped', sign('RS256', rsa, claims), 403,
                                     'the token lacks the required claim ' + name)
            self.assertEqual(doc['error'], 'forbidden')
        # refused requests start no call
        self.assertEqual(len(self.stub.requests_for('/u')), 4)
        self.assertNotIn('Bearer ey', gd.log())

    def test_claims_in_templates(self):
        self.stub.add('/users/user-7/t/acme', json={'mine': True})
        self.stub.add('/users/a%2F..%2Fb/t/acme', json={'odd': True})
        gd = self.start()
        tok = sign('HS256', self.secret, self.claims(tenant='acme', n=42))
        st, _, body, _ = self.bearer(gd, '/me', tok)
        self.assertEqual(st, 200, body)
        self.assertEqual(json.loads(body), {'u': {'mine': True}})
        reqs = self.stub.requests_for('/users/user-7/t/acme')
        self.assertEqual(len(reqs), 1)
        self.assertEqual(reqs[0][1], '/users/user-7/t/acme?n=42')
        self.assertEqual(reqs[0][2].get('x-user'), 'user-7')
        # a claim's value is percent-encoded like any other
        tok = sign('HS256', self.secret, self.claims(sub='a/../b', tenant='acme', n=1))
        st, _, body, _ = self.bearer(gd, '/me', tok)
        self.assertEqual(json.loads(body), {'u': {'odd': True}})
        # a claim the endpoint needs is missing, or not a string or an integer: 403
        for claims, name in ((self.claims(n=1), 'tenant'),
                             (self.claims(tenant=['acme'], n=1), 'tenant'),
                             (self.claims(tenant='acme', n=1.5), 'n')):
            self.assertRefused(gd, '/me', sign('HS256', self.secret, claims), 403,
                               'the token lacks the claim %s (a string or an integer) that this '
                               'endpoint needs' % name)
        # {jwt.NAME} on an endpoint without jwt auth is a config error
        path = os.path.join(self.tmp, 'nojwt.json')
        with open(path, 'w') as f:
            json.dump(config([endpoint('/a', {'u': call('s', '/users/{jwt.sub}')})],
                             {'s': 'http://127.0.0.1:1'}, listen=['127.0.0.1:1']), f)
        r = run_gatherd(['-t', '-c', path])
        self.assertEqual(r.returncode, 1)
        self.assertIn('endpoints[0]: uses {jwt.sub}, but has no "auth": {"jwt": ...}', r.stderr)

    def test_rate_limit_by_claim(self):
        """client_rate_limit with "key": "jwt.sub": one bucket per subject, whatever the address."""
        eps = [endpoint('/limited', {'u': call('s', '/u')},
                        auth={'jwt': {'algorithms': ['HS256'], 'key_file': self.secret_file}},
                        client_rate_limit={'requests': 2, 'per_ms': 600000, 'key': 'jwt.sub'})]
        gd = self.start_gatherd(config(eps, {'s': self.stub}, trusted_proxies=['127.0.0.1']))
        alice = sign('HS256', self.secret, self.claims(sub='alice'))
        alice2 = sign('HS256', self.secret, self.claims(sub='alice', jti='another'))
        bob = sign('HS256', self.secret, self.claims(sub='bob'))
        sts = [self.bearer(gd, '/limited', t)[0] for t in (alice, alice2, alice, bob)]
        self.assertEqual(sts, [200, 200, 429, 200])
        st, h, _, _ = gd.get('/limited', {'Authorization': 'Bearer ' + bob,
                                          'X-Forwarded-For': '198.51.100.1'})
        self.assertEqual(st, 200)
        self.assertEqual(h.get('RateLimit-Remaining'), '0')

    def test_check_config(self):
        def check(jwt):
            path = os.path.join(self.tmp, 'c.json')
            with open(path, 'w') as f:
                json.dump(config([endpoint('/a', {'u': call('s', '/u')}, auth={'jwt': jwt})],
                                 {'s': 'http://127.0.0.1:1'}, listen=['127.0.0.1:1']), f)
            return run_gatherd(['-t', '-c', path])

        short = os.path.join(self.tmp, 'short')
        with open(short, 'w') as f:
            f.write('too-short\n')
        rsa_pub, p256_pub = self.keys['rsa'][1], self.keys['p256'][1]
        self.assertEqual(check({'algorithms': ['RS256'], 'key_file': rsa_pub}).returncode, 0)
        for jwt, want in (
                ({'algorithms': ['RS256', 'HS256'], 'key_file': rsa_pub},
                 'endpoints[0].auth.jwt.algorithms[1]: must be of the same family as RS256'),
                ({'algorithms': ['none'], 'key_file': rsa_pub},
                 'endpoints[0].auth.jwt.algorithms[0]: must be one of HS256'),
                ({'algorithms': ['ES256'], 'key_file': rsa_pub}, 'is not an EC public key'),
                ({'algorithms': ['RS256'], 'key_file': p256_pub}, 'is not an RSA public key'),
                ({'algorithms': ['RS256'], 'key_file': self.secret_file}, 'holds no PEM public key'),
                ({'algorithms': ['HS256'], 'key_file': short}, 'at least 32 bytes'),
                ({'algorithms': ['HS256'], 'key_file': '/nonexistent'}, 'cannot open'),
                ({'algorithms': ['RS256']},
                 'endpoints[0].auth.jwt: needs exactly one of "key_file" and "jwks_file"'),
                ({'algorithms': ['RS256'], 'jwks_file': self.secret_file},
                 'is not a JWK Set'),
                ({'algorithms': ['RS256'], 'jwks_file': self.jwks_file('bad', [
                    {'kty': 'RSA', 'kid': 'a', 'n': '!!', 'e': 'AQAB'}])},
                 "key 0 (kid \"a\"): its key parameters are missing or not base64url"),
                ({'algorithms': ['ES256'], 'jwks_file': self.jwks_file('nokid', [
                    dict(self.jwk('p256'), kid=None)])}, 'key 0 has no "kid"'),
                ({'algorithms': ['HS256'], 'jwks_file': self.jwks_file('onlyrsa', [
                    self.jwk('rsa')])}, 'holds no oct key for HS256'),
                ({'algorithms': ['RS256'], 'key_file': rsa_pub, 'leeway_s': 601},
                 'endpoints[0].auth.jwt.leeway_s'),
                ({'algorithms': ['RS256'], 'key_file': rsa_pub, 'required_claims': {'a': 1}},
                 'endpoints[0].auth.jwt.required_claims.a: must be a string')):
            r = check(jwt)
            self.assertEqual(r.returncode, 1, (jwt, r.stderr))
            self.assertIn(want, r.stderr)
            self.assertNotIn('0123456789abcdef', r.stderr)


if __name__ == '__main__':
    main()
