import { keyTag } from '../core/key.js';
import type { NodeRecord } from '../store/types.js';
import type { TailnetView } from '../tailnet/types.js';
import type { NodeView } from './schemas.js';

/** A stored binding as GET /nodes, POST /register and DELETE /nodes/:id show it (the NODE schema). */
export function nodeView(node: NodeRecord, tailnet: TailnetView | undefined): NodeView {
  return {
    id: node.id,
    name: node.name,
    ip: node.ip,
    ipv6: node.ipv6,
    port: node.port,
    protocol: node.protocol,
    keyPrefix: keyTag(node.keyHash),
    headscaleNodeId: node.headscaleNodeId,
    online: tailnet?.peerOnline(node.ip) ?? null,
    createdAt: node.createdAt.toISOString(),
    updatedAt: node.updatedAt.toISOString(),
  };
}
