package dev.flotilla.cli;

import io.grpc.Status;
import java.net.ConnectException;
import java.net.NoRouteToHostException;
import java.net.UnknownHostException;
import java.time.Duration;
import java.util.Locale;

/**
 * Turns a gRPC status into the one line the user sees and the exit code scripts see. The node's
 * descriptions already say what to fix (see sandbox.proto), so they are shown as they are, with a
 * short prefix naming the kind of failure.
 */
public final class StatusMessages {

  /** What the CLI was doing when the call failed, for messages the node cannot phrase itself. */
  public record Call(String endpoint, String sandboxId, Duration timeout, String tokenHint) {}

  private StatusMessages() {}

  public static CliFailure toFailure(Status status, Call call) {
    String desc = status.getDescription() == null ? "" : status.getDescription().strip();
    switch (status.getCode()) {
      case NOT_FOUND:
        return failed(call.sandboxId() != null
            ? "sandbox " + call.sandboxId() + " not found"
            : or(desc, "not found"));
      case INVALID_ARGUMENT:
        return failed("invalid argument: " + or(desc, "the node rejected the request"));
      case FAILED_PRECONDITION:
        return failed(or(desc, "the sandbox's phase does not allow this"));
      case ALREADY_EXISTS:
        return failed("already exists: " + or(desc, "the request id was used with another spec"));
      case RESOURCE_EXHAUSTED:
        return failed("quota exceeded: " + or(desc, "the tenant has no room left"));
      case UNAUTHENTICATED:
        return failed("not authenticated: " + or(desc, "the node did not accept the token")
            + " (" + call.tokenHint() + ")");
      case PERMISSION_DENIED:
        return failed("permission denied: " + or(desc, "not allowed"));
      case UNIMPLEMENTED:
        return failed("the node at " + call.endpoint() + " does not implement this call"
            + " (is it an older version?)");
      case DEADLINE_EXCEEDED:
        return new CliFailure(ExitCodes.UNAVAILABLE, "no answer from the node at "
            + call.endpoint() + " within " + Durations.format(call.timeout())
            + " (raise --timeout, or retry)");
      case UNAVAILABLE:
        return unavailable(status, desc, call);
      case CANCELLED:
        return failed("call cancelled" + (desc.isEmpty() ? "" : ": " + desc));
      default:
        return failed("the node failed: " + status.getCode().name().toLowerCase(Locale.ROOT)
            .replace('_', ' ') + (desc.isEmpty() ? "" : ": " + desc));
    }
  }

  private static CliFailure unavailable(Status status, String desc, Call call) {
    String tls = tlsFailure(status.getCause(), desc);
    if (tls != null) {
      return new CliFailure(ExitCodes.UNAVAILABLE, "cannot reach a node at " + call.endpoint() + ": " + tls);
    }
    String reason = connectFailure(status.getCause());
    if (reason != null) {
      return new CliFailure(ExitCodes.UNAVAILABLE, "cannot reach a node at " + call.endpoint()
          + ": " + reason + " (is `./flotilla node` running?)");
    }
    return new CliFailure(ExitCodes.UNAVAILABLE, "unavailable: "
        + or(desc, "the node could not answer") + " (safe to retry)");
  }

  /** What to do when the TLS handshake failed (or TLS met plaintext), else null. */
  static String tlsFailure(Throwable cause, String desc) {
    for (Throwable t = cause; t != null; t = t.getCause()) {
      String m = String.valueOf(t.getMessage());
      if (t instanceof javax.net.ssl.SSLException || t.getClass().getSimpleName().equals("NotSslRecordException")) {
        if (t.getClass().getSimpleName().equals("NotSslRecordException") || m.contains("plaintext connection")) {
          return "the node does not speak TLS (drop --tls / FLOTILLA_TLS, or give the node a certificate)";
        }
        if (m.contains("PKIX") || m.contains("certification path") || m.contains("unable to find valid")) {
          return "TLS handshake failed: the node's certificate is not from a CA you trust (give its CA with --ca or FLOTILLA_CA)";
        }
        if (m.contains("No subject alternative") || m.contains("No name matching")) {
          return "TLS handshake failed: the node's certificate is not for this host name or address (" + m + ")";
        }
        if (m.contains("bad_certificate") || m.contains("certificate_required") || m.contains("certificate_unknown")) {
          return "TLS handshake failed: the node wants a client certificate from its CA (--cert and --key, or FLOTILLA_CERT and FLOTILLA_KEY)";
        }
        return "TLS handshake failed: " + m;
      }
    }
    return null;
  }

  /** A short reason if the cause chain says the connection itself failed, else null. */
  static String connectFailure(Throwable cause) {
    for (Throwable t = cause; t != null; t = t.getCause()) {
      if (t instanceof ConnectException) {
        String m = String.valueOf(t.getMessage()).toLowerCase(Locale.ROOT);
        if (m.contains("refused")) return "connection refused";
        if (m.contains("timed out")) return "connection timed out";
        return "cannot connect";
      }
      if (t instanceof NoRouteToHostException) return "no route to host";
      if (t instanceof UnknownHostException) return "unknown host";
      // Netty's connect timeout is not a ConnectException (it is shaded, so matched by name).
      if (t.getClass().getSimpleName().equals("ConnectTimeoutException")) {
        return "connection timed out";
      }
    }
    return null;
  }

  private static CliFailure failed(String message) {
    return new CliFailure(ExitCodes.REQUEST_FAILED, message);
  }

  private static String or(String desc, String fallback) {
    return desc.isEmpty() ? fallback : desc;
  }
}
