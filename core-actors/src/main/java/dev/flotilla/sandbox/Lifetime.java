package dev.flotilla.sandbox;

import dev.flotilla.persistence.FlotillaSerializable;
import java.time.Duration;
import java.time.Instant;

/**
 * When a sandbox ends by itself. Part of its spec, so stored inside events: fields are only ever
 * added.
 *
 * @param timeout the sandbox ends this long after its create (SetTimeout moves the end); zero: never
 * @param onTimeout what its end does
 * @param idleTimeout after no exec, process, file or port-forward call for this long, {@code onIdle}
 *     applies; zero: never
 * @param onIdle what idleness does
 */
public record Lifetime(Duration timeout, TimeoutAction onTimeout, Duration idleTimeout, IdleAction onIdle)
    implements FlotillaSerializable {

  /** No timeout, no idle timeout: what sandboxes created before lifetimes existed replay as. */
  public static final Lifetime NONE = new Lifetime(Duration.ZERO, TimeoutAction.DELETE, Duration.ZERO, IdleAction.STOP);

  public Lifetime {
    timeout = timeout == null || timeout.isNegative() ? Duration.ZERO : timeout;
    onTimeout = onTimeout == null ? TimeoutAction.DELETE : onTimeout;
    idleTimeout = idleTimeout == null || idleTimeout.isNegative() ? Duration.ZERO : idleTimeout;
    onIdle = onIdle == null ? IdleAction.STOP : onIdle;
  }

  /** When a sandbox created at {@code createdAt} ends, or null for never. */
  public Instant deadlineFrom(Instant createdAt) {
    return timeout.isZero() ? null : createdAt.plus(timeout);
  }

  public boolean idles() {
    return !idleTimeout.isZero();
  }

  /** What the end of a sandbox's timeout does. */
  public enum TimeoutAction {
    /** The sandbox is deleted, as by DeleteSandbox. */
    DELETE,
    /** The sandbox is stopped, as by StopSandbox; StartSandbox starts it again (without a timeout). */
    STOP
  }

  /** What an idle sandbox becomes. */
  public enum IdleAction {
    STOP,
    PAUSE,
    /** Suspended (SuspendSandbox): its memory and disk saved, its VM ended; the next call resumes it. */
    SUSPEND
  }
}
