// The certificate and key the TLS listeners serve, read from PEM files and followed while the gateway runs. ACME
// clients and cert-manager renew by writing new files and renaming them over the old ones, so the watch is on the
// directories (a watch on the file itself follows the old inode and never sees the rename). A new pair replaces the
// served one only once it has been read whole and checked; anything wrong keeps the old pair and says why.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import type { Logger } from '../log.js';

export interface CertificateFiles {
  certFile: string;
  keyFile: string;
}

/** What may be said about a loaded certificate: never anything about its key. */
export interface CertificateInfo {
  subject: string;
  issuer: string;
  serial: string;
  /** ISO time. */
  notAfter: string;
  /** SHA-256 fingerprint of the leaf certificate. */
  fingerprint: string;
}

export interface LoadedPair {
  secure: SecureContextOptions;
  info: CertificateInfo;
}

export class CertificateError extends Error {
  override name = 'CertificateError';
}

/**
 * Reads and checks a pair: the certificate parses, the key parses and belongs to it, OpenSSL accepts both as a
 * context, and the certificate has not expired. Throws a CertificateError naming the file at fault.
 */
export async function loadCertificatePair(files: CertificateFiles, now = Date.now()): Promise<LoadedPair> {
  const [cert, key] = await Promise.all([readPem(files.certFile, 'certificate'), readPem(files.keyFile, 'key')]);
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch (err) {
    throw new CertificateError(`${files.certFile}: not a PEM certificate (${(err as Error).message})`);
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch {
    // The parser's message could quote the file; a key's bytes never go into a message.
    throw new CertificateError(`${files.keyFile}: not a PEM private key (or it is encrypted)`);
  }
  if (!leaf.checkPrivateKey(privateKey)) throw new CertificateError(`${files.keyFile}: the key does not belong to the certificate in ${files.certFile}`);
  const notAfter = new Date(leaf.validTo);
  if (notAfter.getTime() <= now) throw new CertificateError(`${files.certFile}: the certificate expired at ${notAfter.toISOString()}`);
  const secure: SecureContextOptions = { cert, key };
  try {
    createSecureContext(secure);
  } catch (err) {
    throw new CertificateError(`${files.certFile}: refused by OpenSSL (${(err as Error).message})`);
  }
  return {
    secure,
    info: { subject: leaf.subject.replace(/\n/g, ', '), issuer: leaf.issuer.replace(/\n/g, ', '), serial: leaf.serialNumber, notAfter: notAfter.toISOString(), fingerprint: leaf.fingerprint256 },
  };
}

async function readPem(file: string, what: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (err) {
    throw new CertificateError(`${file}: cannot read the ${what} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

/** Something serving TLS whose certificate can be swapped without closing it (tls.Server and its subclasses). */
export interface SecureContextTarget {
  setSecureContext(options: SecureContextOptions): void;
}

export interface ReloadOutcome {
  ok: boolean;
  info?: CertificateInfo;
}

export interface CertificateWatcherOptions {
  files: CertificateFiles;
  /** The pair loaded at start. */
  current: LoadedPair;
  targets: readonly SecureContextTarget[];
  log: Logger;
  /** Changes are gathered this long before the pair is read, so a renewal that writes two files is read once. */
  debounceMs?: number;
  /** Every reload attempt's outcome (metrics). */
  onReload?: (outcome: ReloadOutcome) => void;
}

/**
 * Follows the pair's files and swaps the served context when they change. Open connections keep the context they
 * were accepted with; only new handshakes see the new certificate.
 */
export class CertificateWatcher {
  private readonly watchers: FSWatcher[] = [];
  private timer: NodeJS.Timeout | undefined;
  private reloading: Promise<void> = Promise.resolve();
  private closed = false;
  private current: LoadedPair;
  private readonly names: Set<string>;

  constructor(private readonly options: CertificateWatcherOptions) {
    this.current = options.current;
    const { certFile, keyFile } = options.files;
    this.names = new Set([path.basename(certFile), path.basename(keyFile)]);
    // Kubernetes secret volumes swap a `..data` symlink rather than the files themselves: any change in the
    // directory counts, filtered to the names we read or hidden entries (the symlink swap).
    for (const dir of new Set([path.dirname(certFile), path.dirname(keyFile)])) {
      const w = watch(dir, { persistent: false }, (_event, name) => this.changed(name));
      w.on('error', (err) => options.log.warn({ err, dir }, 'TLS certificate directory watch failed; certificate reloads stop'));
      this.watchers.push(w);
    }
  }

  get served(): CertificateInfo {
    return this.current.info;
  }

  private changed(name: string | Buffer | null): void {
    if (this.closed) return;
    const n = name === null ? null : String(name);
    if (n !== null && !this.names.has(n) && !n.startsWith('.')) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.reload(), this.options.debounceMs ?? 500);
  }

  /** Reads the files now (also what a change triggers); resolves when done, whatever the outcome. */
  reload(): Promise<void> {
    this.reloading = this.reloading.then(() => this.reloadNow());
    return this.reloading;
  }

  private async reloadNow(): Promise<void> {
    if (this.closed) return;
    const { log, files } = this.options;
    let next: LoadedPair;
    try {
      next = await loadCertificatePair(files);
    } catch (err) {
      const message = err instanceof CertificateError ? err.message : String(err);
      log.error({ reason: message, served: this.current.info }, 'TLS certificate change refused; still serving the previous certificate');
      this.options.onReload?.({ ok: false });
      return;
    }
    if (this.closed) return;
    // A rename of an unchanged file (or the second of two events) is not a new certificate.
    if (next.info.fingerprint === this.current.info.fingerprint && next.secure.key!.toString() === this.current.secure.key!.toString()) return;
    for (const target of this.options.targets) target.setSecureContext(next.secure);
    this.current = next;
    log.info({ certificate: next.info }, 'TLS certificate reloaded');
    this.options.onReload?.({ ok: true, info: next.info });
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    for (const w of this.watchers) w.close();
  }
}
