// A DeviceRegistrar that answers from a script instead of Headscale: for tests of how approvals and failures are
// handled (the real Headscale path is exercised by the tailnet tests).
import { RegistrarError, type ApprovedDevice, type DeviceRegistrar } from '../../src/headscale/types.js';

export class ScriptedRegistrar implements DeviceRegistrar {
  readonly devices = new Map<string, ApprovedDevice | RegistrarError>();
  approveCalls = 0;
  readonly deleted: string[] = [];
  deleteFailure: RegistrarError | undefined;

  /** Each call is appended here as "headscale.approve" / "headscale.deleteNode", when it is answered. */
  constructor(private readonly steps: string[] = []) {}

  async approve(registrationKey: string): Promise<ApprovedDevice> {
    this.approveCalls++;
    this.steps.push('headscale.approve');
    const outcome = this.devices.get(registrationKey);
    if (outcome === undefined) throw new RegistrarError('not-found', 'Headscale has no pending registration for this key (AuthRequest not found)');
    if (outcome instanceof RegistrarError) throw outcome;
    return outcome;
  }

  async deleteNode(headscaleNodeId: string): Promise<void> {
    this.steps.push('headscale.deleteNode');
    if (this.deleteFailure !== undefined) throw this.deleteFailure;
    this.deleted.push(headscaleNodeId);
  }
}
