package dev.flotilla.agent.protocol.client;

/** A guest-agent call failed. {@link #code()} says how; the message says why. */
public class AgentException extends RuntimeException {

  /** The agent's own error codes (as in agent.proto) plus the transport's. */
  public enum Code {
    UNKNOWN,
    INVALID_ARGUMENT,
    NOT_FOUND,
    ALREADY_EXISTS,
    PERMISSION_DENIED,
    RESOURCE_EXHAUSTED,
    FAILED_PRECONDITION,
    UNIMPLEMENTED,
    INTERNAL,
    UNAVAILABLE,
    /** The call's deadline passed before an answer came. */
    DEADLINE_EXCEEDED,
    /** The connection closed (or broke, or received malformed frames) before an answer came. */
    CONNECTION_LOST
  }

  private final Code code;

  public AgentException(Code code, String message) {
    super(message);
    this.code = code;
  }

  public AgentException(Code code, String message, Throwable cause) {
    super(message, cause);
    this.code = code;
  }

  public Code code() {
    return code;
  }

  @Override
  public String toString() {
    return "AgentException(" + code + "): " + getMessage();
  }
}
