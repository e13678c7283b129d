package dev.flotilla.sandbox.protocol;

import org.apache.pekko.pattern.StatusReply;

/**
 * Why a sandbox request was refused, in terms an API edge maps to its own codes. The message is
 * written for the user: it says what to fix. The control plane, the sandbox entity and the VM
 * supervisor all refuse with one of these, whichever of them answers the caller.
 */
public final class SandboxError extends RuntimeException {

  public enum Kind {
    INVALID_ARGUMENT,
    NOT_FOUND,
    ALREADY_EXISTS,
    FAILED_PRECONDITION,
    RESOURCE_EXHAUSTED,
    UNAVAILABLE,
    INTERNAL
  }

  private final Kind kind;

  public SandboxError(Kind kind, String message) {
    super(message, null, false, false);
    this.kind = kind;
  }

  public Kind kind() {
    return kind;
  }

  /**
   * Errors cross the cluster inside {@code StatusReply.error(String)}: the kind travels as a
   * prefix of the text, so the edge can recover it wherever the entity (or its VM supervisor) ran.
   */
  public String toReplyText() {
    return kind.name() + ": " + getMessage();
  }

  /** This refusal as the answer to an ask: {@link #fromReplyText} recovers it on the asking side. */
  public <T> StatusReply<T> reply() {
    return StatusReply.error(toReplyText());
  }

  public static SandboxError fromReplyText(String text) {
    int i = text.indexOf(": ");
    if (i > 0) {
      try {
        return new SandboxError(Kind.valueOf(text.substring(0, i)), text.substring(i + 2));
      } catch (IllegalArgumentException ignored) {
        // not one of ours: fall through
      }
    }
    return new SandboxError(Kind.INTERNAL, text);
  }

  /** The same refusal, its message prefixed with what was being done ("cannot exec"). */
  public SandboxError doing(String what) {
    return new SandboxError(kind, what + ": " + getMessage());
  }

  public static SandboxError notFound(String id) {
    return new SandboxError(Kind.NOT_FOUND, "sandbox " + id + " not found");
  }

  public static SandboxError precondition(String message) {
    return new SandboxError(Kind.FAILED_PRECONDITION, message);
  }

  public static SandboxError invalid(String message) {
    return new SandboxError(Kind.INVALID_ARGUMENT, message);
  }

  public static SandboxError unavailable(String message) {
    return new SandboxError(Kind.UNAVAILABLE, message);
  }
}
