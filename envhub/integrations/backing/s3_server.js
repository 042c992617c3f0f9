#!/usr/bin/env node
/*
 * One embedded bucket server of envhub (integrations/backing/embedded_buckets.py): s3rver (npm,
 * a filesystem-backed S3 API) behind envhub's own door, on a UNIX socket in the instance's folder.
 *
 *   node s3_server.js <server.json>          start the server in the background, write its pid, exit
 *   node s3_server.js --serve <server.json>  the server itself (what the first form starts)
 *
 * <server.json> is a 0600 file of this user holding the instance's paths and key pairs, so no key
 * is ever on a command line or in an environment variable. It is read once, at start: a new key
 * pair takes a restart, after which the old pair is unknown.
 *
 * Why a door in front of s3rver: s3rver serves requests WITHOUT credentials as if they came from
 * its one account (no access control at all), and it checks only that a Signature Version 4 key
 * id exists, never the signature (a wrong secret passes). So this launcher, before s3rver sees a
 * request:
 *   - refuses anonymous requests, Signature Version 2 and anything not signed with V4;
 *   - verifies the V4 signature (Authorization header, or a presigned URL's query) with the
 *     secret of the key id, as S3 does, in constant time. The payload's hash is taken as signed
 *     (x-amz-content-sha256), not recomputed: nobody can sit between a client and this socket;
 *   - keeps the tenant's key to its own bucket: objects, listing and multi-delete; not creating,
 *     deleting or configuring buckets, nor listing them. envhub's own key may do everything;
 *   - takes path-style requests to an IP address or localhost only (as the endpoint envhub gives
 *     is 127.0.0.1): s3rver would read a bucket out of a virtual-host name, past these checks.
 * And s3rver builds file paths from keys, bucket names, upload ids and part numbers without
 * checking them ("../.." would reach other instances' files, or any file): the store below refuses
 * dot segments and malformed upload ids and part numbers before any path is made.
 *
 * s3rver's built-in S3RVER key is revoked; only the pairs in <server.json> open the server. What
 * isolates one environment's bucket from another's is that each instance is its own server, on a
 * socket in a 0700 folder that only envhub and that environment's relay can open.
 */
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const net = require('net');
const path = require('path');
const { spawn } = require('child_process');

const ALGORITHM = 'AWS4-HMAC-SHA256';
const UPLOAD_ID = /^[0-9a-f]{32}$/; // s3rver's: 16 random bytes in hex
const PART_NUMBER = /^[1-9][0-9]{0,4}$/; // 1 to 10000
const KEY_ID = /^[A-Z0-9]{16,128}$/;

function fail(message) {
  process.stderr.write(`envhub s3 server: ${message}\n`);
  process.exit(1);
}

function readConfig(file) {
  const info = fs.lstatSync(file);
  if (!info.isFile() || info.mode & 0o077 || info.uid !== process.geteuid()) {
    throw new Error(`${file} must be a regular 0600 file of this user`);
  }
  const config = JSON.parse(fs.readFileSync(file, 'utf8'));
  for (const field of ['s3rver', 'directory', 'socket', 'pidfile', 'log', 'bucket']) {
    if (typeof config[field] !== 'string' || !config[field]) throw new Error(`${file}: no ${field}`);
  }
  for (const role of ['admin', 'tenant']) {
    const key = config[role];
    if (key === null && role === 'tenant') continue;
    if (!key || !KEY_ID.test(key.id) || typeof key.secret !== 'string' || key.secret.length < 20) {
      throw new Error(`${file}: the ${role} key pair is missing or malformed`);
    }
  }
  return config;
}

function loadS3rver(folder) {
  const lib = path.join(folder, 'lib');
  try {
    return {
      S3rver: require(folder),
      account: require(path.join(lib, 'models', 'account')).DUMMY_ACCOUNT,
      S3Error: require(path.join(lib, 'models', 'error')),
      FilesystemStore: require(path.join(lib, 'stores', 'filesystem')),
    };
  } catch (err) {
    throw new Error(`s3rver cannot be loaded from ${folder} (${err.code || err.message})`);
  }
}

// -- start in the background -------------------------------------------------------------------

function launch(file) {
  const config = readConfig(file);
  loadS3rver(config.s3rver); // fail here, with the reason, rather than in the background
  const log = fs.openSync(config.log, 'a', 0o600);
  // detached: the server calls setsid and outlives this process (and envhub's worker).
  const child = spawn(process.execPath, [__filename, '--serve', file], {
    cwd: path.dirname(file),
    detached: true,
    stdio: ['ignore', log, log],
  });
  const scratch = `${config.pidfile}.tmp`;
  fs.writeFileSync(scratch, `${child.pid}\n`, { mode: 0o600 });
  fs.renameSync(scratch, config.pidfile);
  child.unref();
}

// -- the server --------------------------------------------------------------------------------

function serve(file) {
  process.umask(0o077); // the socket, the objects and their folders: this user's only
  const config = readConfig(file);
  const { S3rver, account, S3Error, FilesystemStore } = loadS3rver(config.s3rver);

  account.revokeAccessKey('S3RVER');
  const keys = new Map();
  keys.set(config.admin.id, { secret: config.admin.secret, bucket: null });
  if (config.tenant) keys.set(config.tenant.id, { secret: config.tenant.secret, bucket: config.bucket });
  for (const [id, key] of keys) account.createKeyPair(id, key.secret);

  const app = new S3rver({ directory: config.directory, silent: true, vhostBuckets: false });
  app.store = app.context.store = new (containedStore(FilesystemStore, S3Error))(config.directory);
  const handle = app.callback();

  const server = http.createServer((req, res) => {
    let refusal;
    try {
      refusal = authorize(req, keys);
    } catch (err) {
      refusal = ['AccessDenied', `the request cannot be read (${err.message})`];
    }
    if (refusal) {
      // Read what the client is still sending (up to 1 MiB) before answering: closing while it
      // sends its body would show it a broken pipe instead of the refusal.
      const error = new S3Error(...refusal);
      let seen = 0;
      req.on('data', chunk => {
        seen += chunk.length;
        if (seen > DRAIN_LIMIT) req.destroy();
      });
      req.on('error', () => {});
      req.on('end', () => refuse(res, error));
      return;
    }
    handle(req, res);
  });
  server.on('error', err => fail(`cannot serve on ${config.socket}: ${err.message}`));
  server.listen(config.socket, () => {
    process.stdout.write(`envhub s3 server: bucket ${config.bucket} on ${config.socket} (pid ${process.pid})\n`);
  });
  const stop = () => {
    // Requests under way may finish (briefly); idle connections close at once.
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 3000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

const DRAIN_LIMIT = 1024 * 1024;

function refuse(res, error) {
  const body = error.toXML();
  res.writeHead(error.status, {
    'Content-Type': 'application/xml',
    'Content-Length': Buffer.byteLength(body),
    Connection: 'close',
  });
  res.end(body);
}

// -- who may do what ---------------------------------------------------------------------------

/** Why the request is refused, as [S3 error code, message]; undefined when it may go on. */
function authorize(req, keys) {
  const [rawPath, rawQuery = ''] = splitOnce(req.url, '?');
  const query = parseQuery(rawQuery);
  const headers = collectHeaders(req.rawHeaders);
  const host = (headers.get('host') || '').replace(/:[0-9]+$/, '').replace(/^\[(.*)\]$/, '$1');
  if (!(net.isIP(host) || host === 'localhost')) {
    return ['InvalidRequest', 'address this server by IP address, path-style (as S3_ENDPOINT says)'];
  }

  const presigned = query.some(([name]) => name === 'X-Amz-Algorithm');
  const authorization = headers.get('authorization') || '';
  let signed;
  if (presigned && !authorization) {
    signed = fromQuery(query);
  } else if (authorization.startsWith(`${ALGORITHM} `) && !presigned) {
    signed = fromHeader(authorization, headers);
  } else {
    return ['AccessDenied', 'sign requests with AWS Signature Version 4 and this instance\'s key pair'];
  }
  if (!signed) return ['AuthorizationHeaderMalformed', 'the signature\'s parts cannot be read'];

  const key = keys.get(signed.keyId);
  if (!key) {
    return ['InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.'];
  }
  const [date, region, service, terminator] = signed.scope.split('/');
  if (service !== 's3' || terminator !== 'aws4_request' || !region || date !== signed.amzDate.slice(0, 8)) {
    return ['AuthorizationHeaderMalformed', 'the credential scope is not <date>/<region>/s3/aws4_request'];
  }
  if (!signed.signedHeaders.includes('host')) {
    return ['AccessDenied', 'the Host header must be signed'];
  }
  const canonical = [
    req.method,
    canonicalPath(rawPath),
    query
      .filter(([name]) => name !== 'X-Amz-Signature')
      .map(([name, value]) => [encode(name), encode(value)])
      .sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0))
      .map(([name, value]) => `${name}=${value}`)
      .join('&'),
    signed.signedHeaders.map(name => `${name}:${headers.get(name) || ''}\n`).join(''),
    signed.signedHeaders.join(';'),
    signed.payloadHash,
  ].join('\n');
  const toSign = [ALGORITHM, signed.amzDate, signed.scope, sha256(canonical)].join('\n');
  let signingKey = `AWS4${key.secret}`;
  for (const part of [date, region, service, terminator]) signingKey = hmac(signingKey, part);
  const expected = Buffer.from(hmac(signingKey, toSign).toString('hex'));
  const given = Buffer.from(signed.signature);
  if (expected.length !== given.length || !crypto.timingSafeEqual(expected, given)) {
    return ['SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided.'];
  }

  if (key.bucket !== null) {
    const segments = rawPath.split('/').slice(1).map(decodeURIComponent);
    if (segments[0] !== key.bucket) {
      return ['AccessDenied', `this key pair reaches bucket ${key.bucket} only`];
    }
    const onBucket = segments.length === 1 || (segments.length === 2 && segments[1] === '');
    if (onBucket && !['GET', 'HEAD', 'POST'].includes(req.method)) {
      return ['AccessDenied', 'this key pair cannot create, delete or configure buckets'];
    }
  }
  for (const [name, value] of query) {
    if (name === 'uploadId' && !UPLOAD_ID.test(value)) return ['NoSuchUpload', 'no such upload'];
    if (name === 'partNumber' && !PART_NUMBER.test(value)) {
      return ['InvalidArgument', 'Part number must be an integer between 1 and 10000, inclusive'];
    }
  }
  return undefined;
}

function fromHeader(authorization, headers) {
  const fields = new Map(
    authorization
      .slice(ALGORITHM.length + 1)
      .split(',')
      .map(field => splitOnce(field.trim(), '=')),
  );
  const credential = fields.get('Credential');
  const signedHeaders = fields.get('SignedHeaders');
  const signature = fields.get('Signature');
  const amzDate = headers.get('x-amz-date');
  const payloadHash = headers.get('x-amz-content-sha256');
  if (!credential || !signedHeaders || !signature || !amzDate || !payloadHash) return undefined;
  const [keyId, ...scope] = credential.split('/');
  return { keyId, scope: scope.join('/'), signedHeaders: signedHeaders.split(';'), signature, amzDate, payloadHash };
}

function fromQuery(query) {
  const get = name => (query.find(([key]) => key === name) || [])[1];
  const credential = get('X-Amz-Credential');
  const signedHeaders = get('X-Amz-SignedHeaders');
  const signature = get('X-Amz-Signature');
  const amzDate = get('X-Amz-Date');
  if (get('X-Amz-Algorithm') !== ALGORITHM || !credential || !signedHeaders || !signature || !amzDate) {
    return undefined;
  }
  const [keyId, ...scope] = credential.split('/');
  return {
    keyId,
    scope: scope.join('/'),
    signedHeaders: signedHeaders.split(';'),
    signature,
    amzDate,
    payloadHash: get('X-Amz-Content-Sha256') || 'UNSIGNED-PAYLOAD',
  };
}

// -- Signature Version 4's canonical forms -----------------------------------------------------

function splitOnce(text, separator) {
  const at = text.indexOf(separator);
  return at < 0 ? [text] : [text.slice(0, at), text.slice(at + separator.length)];
}

function parseQuery(raw) {
  return raw
    .split('&')
    .filter(Boolean)
    .map(pair => {
      const [name, value = ''] = splitOnce(pair, '=');
      return [decodeURIComponent(name), decodeURIComponent(value)];
    });
}

/** Lower-case name -> its values, each trimmed with inner runs of spaces made one, joined by commas. */
function collectHeaders(raw) {
  const headers = new Map();
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    const value = raw[i + 1].trim().replace(/\s+/g, ' ');
    headers.set(name, headers.has(name) ? `${headers.get(name)},${value}` : value);
  }
  return headers;
}

/** S3 signs the path as the client encoded it; decoding then encoding each segment gives that form. */
function canonicalPath(rawPath) {
  return rawPath
    .split('/')
    .map(segment => encode(decodeURIComponent(segment)))
    .join('/');
}

function encode(text) {
  return encodeURIComponent(text).replace(/[!'()*]/g, ch => `%${ch.charCodeAt(0).toString(16).toUpperCase()}`);
}

function sha256(text) {
  return crypto.createHash('sha256').update(text, 'utf8').digest('hex');
}

function hmac(key, text) {
  return crypto.createHmac('sha256', key).update(text, 'utf8').digest();
}

// -- paths that stay inside the instance's folder ----------------------------------------------

function containedStore(FilesystemStore, S3Error) {
  const refuse = what => {
    throw new S3Error('InvalidArgument', what);
  };
  const bucketName = bucket => {
    if (typeof bucket !== 'string' || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket) || bucket.includes('..')) {
      refuse('invalid bucket name');
    }
  };
  const keyName = key => {
    if (typeof key !== 'string' || key.includes('\0') || key.split('/').some(part => part === '.' || part === '..')) {
      refuse('object keys with "." or ".." segments are not supported here');
    }
  };
  const upload = id => UPLOAD_ID.test(String(id)) || refuse('invalid upload id');
  const part = number => PART_NUMBER.test(String(number)) || refuse('invalid part number');

  return class ContainedStore extends FilesystemStore {
    getBucketPath(bucket) {
      bucketName(bucket);
      return super.getBucketPath(bucket);
    }

    getResourcePath(bucket, key = '', resource) {
      bucketName(bucket);
      keyName(key);
      return super.getResourcePath(bucket, key, resource);
    }

    async initiateUpload(bucket, key, uploadId, metadata) {
      upload(uploadId);
      keyName(key);
      return super.initiateUpload(bucket, key, uploadId, metadata);
    }

    async putPart(bucket, uploadId, partNumber, content) {
      upload(uploadId);
      part(partNumber);
      return super.putPart(bucket, uploadId, partNumber, content);
    }

    async putObjectMultipart(bucket, uploadId, parts) {
      upload(uploadId);
      parts.forEach(each => part(each.number));
      return super.putObjectMultipart(bucket, uploadId, parts);
    }
  };
}

// ------------------------------------------------------------------------------------------------

try {
  const args = process.argv.slice(2);
  if (args.length === 2 && args[0] === '--serve') {
    serve(args[1]);
  } else if (args.length === 1) {
    launch(args[0]);
  } else {
    fail('usage: s3_server.js [--serve] <server.json>');
  }
} catch (err) {
  fail(err.message);
}
