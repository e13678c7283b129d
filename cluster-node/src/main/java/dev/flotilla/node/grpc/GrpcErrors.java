package dev.flotilla.node.grpc;

import dev.flotilla.sandbox.SandboxControl;
import dev.flotilla.sandbox.protocol.SandboxError;
import io.grpc.Status;
import dev.flotilla.images.ImageException;
import dev.flotilla.vm.TemplateCatalog;
import dev.flotilla.vm.VmException;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.TimeoutException;
import org.apache.pekko.grpc.GrpcServiceException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** The one place where control-plane failures become gRPC statuses. */
final class GrpcErrors {
  private static final Logger log = LoggerFactory.getLogger(GrpcErrors.class);

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

  /**
   * ImageService failures: a status already chosen (anywhere in the cause chain, e.g. under a
   * stream's failure), then the image module's kinds. A registry that cannot be reached or a
   * pull past its deadline is UNAVAILABLE (safe to retry); any other image error says what is
   * wrong with the request or the image.
   */
  static GrpcServiceException convertImage(Throwable failure) {
    for (Throwable t = failure; t != null; t = t.getCause()) {
      if (t instanceof GrpcServiceException g) return g;
      if (t instanceof ImageException.NotFound e) return status(Status.NOT_FOUND, e.getMessage());
      if (t instanceof ImageException.Unavailable e) return status(Status.UNAVAILABLE, e.getMessage());
      if (t instanceof ImageException e) return status(Status.INVALID_ARGUMENT, e.getMessage());
      if (t instanceof IllegalArgumentException e) return status(Status.INVALID_ARGUMENT, e.getMessage());
      if (t instanceof TimeoutException) {
        return status(Status.UNAVAILABLE, "the pull did not finish within flotilla.images.pull-timeout; it goes on, retry later");
      }
      if (t instanceof RejectedExecutionException) return status(Status.UNAVAILABLE, "the node is shutting down or overloaded (retry)");
    }
    log.warn("image call failed", failure);
    return status(Status.INTERNAL, "the node failed: " + failure);
  }

  /**
   * TemplateService failures: a status already chosen, then the catalog's kinds. A driver that
   * could not build a template (its image does not boot, the node lacks memory or disk for it) is
   * FAILED_PRECONDITION, not UNAVAILABLE: UNAVAILABLE tells clients to retry as they are, and the
   * same warm would fail the same way until what the message names is fixed. A bad size is the
   * spec validator's INVALID_ARGUMENT.
   */
  static GrpcServiceException convertTemplate(Throwable failure) {
    for (Throwable t = failure; t != null; t = t.getCause()) {
      if (t instanceof GrpcServiceException g) return g;
      if (t instanceof TemplateCatalog.NotFound e) return status(Status.NOT_FOUND, e.getMessage());
      if (t instanceof TemplateCatalog.InUse e) return status(Status.FAILED_PRECONDITION, e.getMessage());
      if (t instanceof VmException e) return status(Status.FAILED_PRECONDITION, e.getMessage());
      if (t instanceof SandboxError) return convert(t);
      if (t instanceof IllegalArgumentException e) return status(Status.INVALID_ARGUMENT, e.getMessage());
      if (t instanceof RejectedExecutionException) return status(Status.UNAVAILABLE, "the node is shutting down or overloaded (retry)");
    }
    log.warn("template call failed", failure);
    return status(Status.INTERNAL, "the node failed: " + failure);
  }

  static GrpcServiceException status(Status status, String message) {
    return new GrpcServiceException(status.withDescription(message));
  }
}
