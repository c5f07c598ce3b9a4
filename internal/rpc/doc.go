// Package rpc is the RPC vocabulary Rampart's policies share and none of
// them owns: the names Rampart puts on the wire (ErrorInfo reasons, the
// attempt header, gRFC A6's pushback trailer) with the code that writes and
// reads them, how a failed attempt is classified, how a status error is
// built, where gRPC writes what an attempt learnt for every interceptor that
// reads it, how a full method is parsed and how the operation is read from a
// Kratos transport, who called (the Consul service in the caller's verified
// client certificate), and a wait that ends with its context.
//
// Policy: it is the leaf of the project's graph and imports no package of
// this module, so every policy under internal/middleware, the data layer and
// the services can depend on it without depending on each other. A name or
// a decoding that two packages need lives here once; a policy's own
// decisions stay in the policy.
package rpc
