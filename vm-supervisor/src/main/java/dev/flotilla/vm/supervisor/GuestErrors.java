package dev.flotilla.vm.supervisor;

import dev.flotilla.agent.protocol.client.AgentException;
import dev.flotilla.sandbox.protocol.SandboxError;
import dev.flotilla.sandbox.protocol.SandboxError.Kind;
import dev.flotilla.vm.VmException;
import java.util.concurrent.TimeoutException;

/**
 * How the supervisor refuses a call into its VM: a {@link SandboxError} whose kind comes from
 * what failed (the guest agent's error code, the driver, a deadline), so the API edge answers
 * with the right status instead of INTERNAL for everything the supervisor says.
 */
final class GuestErrors {
  private GuestErrors() {}

  /** {@code doing} ("cannot exec") and why {@code failure} happened, of the kind it is. */
  static SandboxError of(String doing, Throwable failure) {
    Throwable cause = AgentStreams.unwrap(failure);
    return new SandboxError(kindOf(cause), doing + ": " + VmSupervisor.reason(cause));
  }

  static Kind kindOf(Throwable cause) {
    if (cause instanceof AgentException ae) {
      return switch (ae.code()) {
        case INVALID_ARGUMENT -> Kind.INVALID_ARGUMENT;
        case NOT_FOUND -> Kind.NOT_FOUND;
        case ALREADY_EXISTS -> Kind.ALREADY_EXISTS;
        case RESOURCE_EXHAUSTED -> Kind.RESOURCE_EXHAUSTED;
        // What the sandbox's own state forbids (a file its user may not write): not the caller's credentials.
        case PERMISSION_DENIED, FAILED_PRECONDITION -> Kind.FAILED_PRECONDITION;
        // The agent did not answer in time or its connection went: worth retrying.
        case UNAVAILABLE, DEADLINE_EXCEEDED, CONNECTION_LOST -> Kind.UNAVAILABLE;
        case UNKNOWN, UNIMPLEMENTED, INTERNAL -> Kind.INTERNAL;
      };
    }
    if (cause instanceof TimeoutException) return Kind.UNAVAILABLE;
    // The driver refused (a host without a freezer, a VM that is not in a state to do it).
    if (cause instanceof VmException) return Kind.FAILED_PRECONDITION;
    return Kind.INTERNAL;
  }
}
