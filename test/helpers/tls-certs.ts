// A throw-away certificate authority made with openssl, and server certificates it signs, as PEM files: what an
// operator's ACME client or cert-manager would leave on disk for the gateway.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TestCa {
  dir: string;
  caFile: string;
  ca: Buffer;
  /** A new key and a certificate for localhost / 127.0.0.1 signed by the CA; `serial` in hex. */
  issue(cn: string, serial: string): Promise<IssuedPair>;
  remove(): Promise<void>;
}

export interface IssuedPair {
  certFile: string;
  keyFile: string;
  cert: Buffer;
  key: Buffer;
}

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args, { timeout: 20_000 });
  } catch (err) {
    throw new Error(`openssl ${args[0]} failed (install it: apt-get install openssl): ${(err as Error).message}`);
  }
}

export async function makeTestCa(): Promise<TestCa> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tailgate-ca-'));
  const caFile = path.join(dir, 'ca.pem');
  const caKey = path.join(dir, 'ca-key.pem');
  await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=tailgate test CA', '-keyout', caKey, '-out', caFile]);
  const ext = path.join(dir, 'server.ext');
  await writeFile(ext, 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n');
  const issue = async (cn: string, serial: string): Promise<IssuedPair> => {
    const keyFile = path.join(dir, `${cn}-key.pem`);
    const csr = path.join(dir, `${cn}.csr`);
    const certFile = path.join(dir, `${cn}.pem`);
    await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${cn}`, '-keyout', keyFile, '-out', csr]);
    await openssl(['x509', '-req', '-in', csr, '-CA', caFile, '-CAkey', caKey, '-set_serial', `0x${serial}`, '-days', '1', '-extfile', ext, '-out', certFile]);
    return { certFile, keyFile, cert: await readFile(certFile), key: await readFile(keyFile) };
  };
  return { dir, caFile, ca: await readFile(caFile), issue, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** Puts `content` at `file` the way renewals do: written beside it, then renamed over it. */
export async function replaceByRename(file: string, content: Buffer | string): Promise<void> {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  await writeFile(temp, content);
  await rename(temp, file);
}
