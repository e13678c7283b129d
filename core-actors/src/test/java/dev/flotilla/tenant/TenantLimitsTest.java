package dev.flotilla.tenant;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.ConfigFactory;
import dev.flotilla.sandbox.protocol.SandboxError;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

class TenantLimitsTest {

  final AtomicLong now = new AtomicLong(1_000_000_000L);

  TenantLimits limits(TenantLimits.Limits l) {
    return new TenantLimits(t -> t.equals("big") ? new TenantLimits.Limits(0, 0, 0, 0, 0) : l, now::get);
  }

  @Test
  void theBucketAllowsItsBurstThenItsRate() {
    TenantLimits l = limits(new TenantLimits.Limits(10, 5, 0, 0, 0));
    for (int i = 0; i < 5; i++) l.admit("acme");
    SandboxError e = assertThrows(SandboxError.class, () -> l.admit("acme"));
    assertEquals(SandboxError.Kind.RESOURCE_EXHAUSTED, e.kind());
    assertTrue(e.getMessage().contains("request rate of 10/s (burst 5)"), e.getMessage());
    now.addAndGet(100_000_000L); // 0.1 s: one more token
    l.admit("acme");
    assertThrows(SandboxError.class, () -> l.admit("acme"));
    // Another tenant has its own bucket; an unlimited one never runs dry.
    for (int i = 0; i < 5; i++) l.admit("other");
    for (int i = 0; i < 10_000; i++) l.admit("big");
    now.addAndGet(60_000_000_000L); // a long pause refills to the burst, no more
    for (int i = 0; i < 5; i++) l.admit("acme");
    assertThrows(SandboxError.class, () -> l.admit("acme"));
  }

  @Test
  void concurrentSlotsAreCappedPerKindAndComeBackOnRelease() {
    TenantLimits l = limits(new TenantLimits.Limits(0, 0, 2, 1, 0));
    var a = l.acquire("acme", TenantLimits.Kind.EXEC);
    var b = l.acquire("acme", TenantLimits.Kind.EXEC);
    SandboxError e = assertThrows(SandboxError.class, () -> l.acquire("acme", TenantLimits.Kind.EXEC));
    assertEquals(SandboxError.Kind.RESOURCE_EXHAUSTED, e.kind());
    assertTrue(e.getMessage().contains("2 concurrent execs under way, its limit (flotilla.tenants.limits.concurrent-execs = 2)"),
        e.getMessage());
    l.acquire("acme", TenantLimits.Kind.WATCH);
    assertThrows(SandboxError.class, () -> l.acquire("acme", TenantLimits.Kind.WATCH));
    for (int i = 0; i < 100; i++) l.acquire("acme", TenantLimits.Kind.TRANSFER); // 0: unlimited
    a.release();
    a.release(); // idempotent: gives back one slot, not two
    assertEquals(1, l.inUse("acme", TenantLimits.Kind.EXEC));
    l.acquire("acme", TenantLimits.Kind.EXEC);
    assertThrows(SandboxError.class, () -> l.acquire("acme", TenantLimits.Kind.EXEC));
    b.release();
    assertEquals(0, l.inUse("other", TenantLimits.Kind.EXEC));
  }

  @Test
  void configGivesDefaultsAndPerTenantOverrides() {
    var c = ConfigFactory.parseString("""
        default-limits { requests-per-second = 1, burst = 1, concurrent-execs = 1, concurrent-watches = 1, concurrent-file-transfers = 1 }
        limits { "ci" { concurrent-execs = 3 } }
        """);
    TenantLimits l = TenantLimits.fromConfig(c);
    l.acquire("ci", TenantLimits.Kind.EXEC);
    l.acquire("ci", TenantLimits.Kind.EXEC);
    l.acquire("ci", TenantLimits.Kind.EXEC);
    assertThrows(SandboxError.class, () -> l.acquire("ci", TenantLimits.Kind.EXEC));
    l.acquire("acme", TenantLimits.Kind.EXEC);
    assertThrows(SandboxError.class, () -> l.acquire("acme", TenantLimits.Kind.EXEC));
    // The shipped defaults parse.
    TenantLimits.fromConfig(ConfigFactory.load().getConfig("flotilla.tenants"));
  }
}
