package dev.flotilla.agent.guest;

import dev.flotilla.agent.protocol.v1.Error;

/** A request the agent refuses: becomes an {@code Error} response with this code and message. */
public final class AgentError extends RuntimeException {
  private final Error.Code code;

  public AgentError(Error.Code code, String message) {
    super(message, null, false, false);
    this.code = code;
  }

  public Error.Code code() {
    return code;
  }

  public static AgentError invalid(String message) {
    return new AgentError(Error.Code.INVALID_ARGUMENT, message);
  }

  public static AgentError notFound(String message) {
    return new AgentError(Error.Code.NOT_FOUND, message);
  }

  public static AgentError precondition(String message) {
    return new AgentError(Error.Code.FAILED_PRECONDITION, message);
  }

  public Error toProto() {
    return Error.newBuilder().setCode(code).setMessage(getMessage()).build();
  }
}
