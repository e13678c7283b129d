package dev.flotilla.tenant;

import com.typesafe.config.Config;
import dev.flotilla.sandbox.protocol.SandboxError;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.LongSupplier;

/**
 * What one tenant may ask of this node at once, so that no tenant can starve the others: a
 * request rate (a token bucket) and caps on the calls that hold something while they last
 * (execs, watches and log follows, file transfers, port-forwards). Node-local: each node of a cluster enforces
 * them for the calls it serves. Past a limit a call fails with RESOURCE_EXHAUSTED, naming it.
 */
public final class TenantLimits {

  /**
   * @param requestsPerSecond refill rate of the bucket; 0: unlimited
   * @param burst the bucket's size
   * @param execs concurrent execs; 0: unlimited
   * @param watches concurrent watches and followed logs; 0: unlimited
   * @param transfers concurrent file reads and writes; 0: unlimited
   * @param portForwards concurrent forwarded connections (one per PortForward call); 0: unlimited
   */
  public record Limits(double requestsPerSecond, int burst, int execs, int watches, int transfers, int portForwards) {
    public Limits {
      if (requestsPerSecond < 0 || burst < 0 || execs < 0 || watches < 0 || transfers < 0 || portForwards < 0) {
        throw new IllegalArgumentException("tenant limits must not be negative");
      }
    }

    /** Without a cap on port-forwards. */
    public Limits(double requestsPerSecond, int burst, int execs, int watches, int transfers) {
      this(requestsPerSecond, burst, execs, watches, transfers, 0);
    }

    int cap(Kind kind) {
      return switch (kind) {
        case EXEC -> execs;
        case WATCH -> watches;
        case TRANSFER -> transfers;
        case PORT_FORWARD -> portForwards;
      };
    }

    static Limits from(Config c) {
      return new Limits(c.getDouble("requests-per-second"), c.getInt("burst"), c.getInt("concurrent-execs"),
          c.getInt("concurrent-watches"), c.getInt("concurrent-file-transfers"),
          c.hasPath("concurrent-port-forwards") ? c.getInt("concurrent-port-forwards") : 0);
    }
  }

  /** Calls that hold something while they last. */
  public enum Kind {
    EXEC("concurrent execs", "concurrent-execs"),
    WATCH("concurrent watches and followed logs", "concurrent-watches"),
    TRANSFER("concurrent file transfers", "concurrent-file-transfers"),
    PORT_FORWARD("concurrent port-forwards", "concurrent-port-forwards");

    final String what;
    final String key;

    Kind(String what, String key) {
      this.what = what;
      this.key = key;
    }
  }

  /** Held while a call lasts; {@link #release} (idempotent) gives it back. */
  public interface Permit {
    void release();
  }

  private final java.util.function.Function<String, Limits> limitsOf;
  private final LongSupplier nanoClock;
  private final Map<String, State> tenants = new ConcurrentHashMap<>();

  private static final class State {
    final Limits limits;
    double tokens;
    long refilledAt;
    final int[] inUse = new int[Kind.values().length];

    State(Limits limits, long now) {
      this.limits = limits;
      this.tokens = limits.burst();
      this.refilledAt = now;
    }
  }

  public TenantLimits(java.util.function.Function<String, Limits> limitsOf, LongSupplier nanoClock) {
    this.limitsOf = limitsOf;
    this.nanoClock = nanoClock;
  }

  /** From {@code flotilla.tenants}: {@code default-limits}, overridden per tenant under {@code limits."tenant"}. */
  public static TenantLimits fromConfig(Config tenants) {
    Config defaults = tenants.getConfig("default-limits");
    Config perTenant = tenants.getConfig("limits");
    Limits.from(defaults); // checked at start, not at a tenant's first call
    return new TenantLimits(tenant -> {
      String key = "\"" + tenant + "\"";
      return Limits.from(perTenant.hasPath(key) ? perTenant.getConfig(key).withFallback(defaults) : defaults);
    }, System::nanoTime);
  }

  /** No limits (tests, tools). */
  public static final TenantLimits NONE = new TenantLimits(t -> new Limits(0, 0, 0, 0, 0), System::nanoTime);

  private State state(String tenant) {
    return tenants.computeIfAbsent(tenant, t -> new State(limitsOf.apply(t), nanoClock.getAsLong()));
  }

  /** Takes one request from the tenant's bucket, or fails with RESOURCE_EXHAUSTED. */
  public void admit(String tenant) {
    State s = state(tenant);
    if (s.limits.requestsPerSecond() == 0) return;
    synchronized (s) {
      long now = nanoClock.getAsLong();
      s.tokens = Math.min(s.limits.burst(), s.tokens + (now - s.refilledAt) / 1e9 * s.limits.requestsPerSecond());
      s.refilledAt = now;
      if (s.tokens < 1) {
        throw new SandboxError(SandboxError.Kind.RESOURCE_EXHAUSTED, "tenant '" + tenant + "' is over its request rate of "
            + fmt(s.limits.requestsPerSecond()) + "/s (burst " + s.limits.burst() + "): slow down and retry"
            + " (flotilla.tenants.limits.requests-per-second)");
      }
      s.tokens -= 1;
    }
  }

  /** Takes one of the tenant's {@code kind} slots, or fails with RESOURCE_EXHAUSTED naming the limit. */
  public Permit acquire(String tenant, Kind kind) {
    State s = state(tenant);
    int cap = s.limits.cap(kind);
    if (cap == 0) return () -> { };
    synchronized (s) {
      if (s.inUse[kind.ordinal()] >= cap) {
        throw new SandboxError(SandboxError.Kind.RESOURCE_EXHAUSTED, "tenant '" + tenant + "' has " + s.inUse[kind.ordinal()]
            + " " + kind.what + " under way, its limit (flotilla.tenants.limits." + kind.key + " = " + cap
            + "); wait for one to end");
      }
      s.inUse[kind.ordinal()]++;
    }
    AtomicBoolean released = new AtomicBoolean();
    return () -> {
      if (!released.compareAndSet(false, true)) return;
      synchronized (s) {
        s.inUse[kind.ordinal()]--;
      }
    };
  }

  /** Slots of {@code kind} the tenant holds now. */
  public int inUse(String tenant, Kind kind) {
    State s = state(tenant);
    synchronized (s) {
      return s.inUse[kind.ordinal()];
    }
  }

  private static String fmt(double d) {
    return d == Math.rint(d) ? Long.toString((long) d) : Double.toString(d);
  }
}
