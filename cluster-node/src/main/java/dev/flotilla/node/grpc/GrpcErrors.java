package dev.flotilla.node.grpc;

import dev.flotilla.sandbox.SandboxControl;
import dev.flotilla.sandbox.SandboxError;
import io.grpc.Status;
import org.apache.pekko.grpc.GrpcServiceException;

/** The one place where control-plane failures become gRPC statuses. */
final class GrpcErrors {
  private GrpcErrors() {}

  static GrpcServiceException convert(Throwable failure) {
    if (failure instanceof GrpcServiceException g) return g;
    Throwable cause = failure.getCause();
    if (cause instanceof GrpcServiceException g) return g;
    if (failure instanceof IllegalArgumentException e) return status(Status.INVALID_ARGUMENT, e.getMessage());
    SandboxError e = SandboxControl.unwrap(failure);
    Status status = switch (e.kind()) {
      case INVALID_ARGUMENT -> Status.INVALID_ARGUMENT;
      case NOT_FOUND -> Status.NOT_FOUND;
      case ALREADY_EXISTS -> Status.ALREADY_EXISTS;
      case FAILED_PRECONDITION -> Status.FAILED_PRECONDITION;
      case RESOURCE_EXHAUSTED -> Status.RESOURCE_EXHAUSTED;
      case UNAVAILABLE -> Status.UNAVAILABLE;
      case INTERNAL -> Status.INTERNAL;
    };
    return status(status, e.getMessage());
  }

  static GrpcServiceException status(Status status, String message) {
    return new GrpcServiceException(status.withDescription(message));
  }
}
