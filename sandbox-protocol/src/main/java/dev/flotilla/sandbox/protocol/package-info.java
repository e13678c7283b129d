/**
 * The vocabulary of work inside a sandbox (exec, and its file system: {@link dev.flotilla.sandbox.protocol.FsValue}), shared by the layers that carry it: the API edge
 * (cluster-node) builds and reads it, the sandbox entity (core-actors) routes it, and the VM
 * supervisor (vm-supervisor) turns it into guest-agent calls. It lives below all three so that
 * none of them imports another's internals and no layer translates one copy of a type into
 * another on every exec. Plain data: no behaviour beyond checking its own shape.
 */
package dev.flotilla.sandbox.protocol;
