// The one property tailgate adds to a socket: the stage that owns it now (the HTTP front reading a request head, the
// SOCKS5 session, the dial, the device handshake, the relay's tunnel), so that each stage's shared handlers find their
// state through `this` with no closure per connection. One slot for every stage, set first thing on every socket:
// each property added to a socket changes its hidden class, and sockets of many shapes passing the same stream and
// event code make V8 fall back to its slow (megamorphic) property lookups there (bench/README.md, node-floor).
// A stage's handlers are attached only while it owns the slot; code that reads another stage's slot checks the type.
export const kStage = Symbol('tailgate.stage');
