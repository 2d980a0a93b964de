import assert from 'node:assert/strict';
import { DialError, type FailureReason } from '../../src/core/failure.js';

/** Asserts that `promise` rejects with a DialError of this reason whose message matches. */
export async function dialFails(promise: Promise<unknown>, reason: FailureReason, message: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof DialError, String(err));
    assert.equal(err.reason, reason, err.message);
    assert.match(err.message, message);
    return true;
  });
}
