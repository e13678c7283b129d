package dev.flotilla.tenant;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** One reconciliation pass over in-memory ledgers, one case per way a ledger drifts. */
class LedgerReconcilerTest {
  static final Instant NOW = Instant.parse("2026-12-02T12:00:00Z");
  static final Duration GRACE = Duration.ofMinutes(5);

  final Map<String, TreeMap<String, TenantEntity.Reservation>> ledgers = new TreeMap<>();
  final List<String> released = new ArrayList<>();

  void reserve(String tenant, String id, Instant at) {
    ledgers.computeIfAbsent(tenant, t -> new TreeMap<>()).put(id, new TenantEntity.Reservation(id, 1, 64, Map.of(), at));
  }

  final LedgerReconciler.Ledger ledger = new LedgerReconciler.Ledger() {
    @Override
    public CompletionStage<TenantEntity.Page> list(String tenant, String afterId, int limit) {
      var m = ledgers.getOrDefault(tenant, new TreeMap<>());
      var tail = afterId.isEmpty() ? m : m.tailMap(afterId, false);
      List<TenantEntity.Reservation> out = new ArrayList<>();
      for (var r : tail.values()) {
        if (out.size() == limit) break;
        out.add(r);
      }
      return CompletableFuture.completedFuture(new TenantEntity.Page(out, tail.size() > out.size()));
    }

    @Override
    public CompletionStage<Void> release(String tenant, String sandboxId) {
      ledgers.get(tenant).remove(sandboxId);
      released.add(tenant + "/" + sandboxId);
      return CompletableFuture.completedFuture(null);
    }
  };

  @Test
  void reservationsOfSandboxesThatDoNotExistAreReleasedAndNoOthers() throws Exception {
    Set<String> existing = Set.of("sb-live", "sb-other-live");
    Instant old = NOW.minus(Duration.ofHours(1));
    reserve("acme", "sb-live", old);                            // exists: kept
    reserve("acme", "sb-never-created", old);                   // a create that ended in doubt, not retried: released
    reserve("acme", "sb-deleted", old);                         // deleted, its release lost in a crash: released
    reserve("acme", "sb-young", NOW.minus(Duration.ofMinutes(1))); // its create may be under way: not even asked
    reserve("beta", "sb-other-live", old);
    for (int i = 0; i < 450; i++) reserve("many", String.format("sb-gone-%03d", i), old); // pages of 200
    List<String> asked = new ArrayList<>();
    LedgerReconciler.Sandboxes sandboxes = id -> {
      asked.add(id);
      return CompletableFuture.completedFuture(existing.contains(id));
    };
    var result = LedgerReconciler.pass(ledger, sandboxes, List.of("acme", "beta", "many", "nobody"), NOW, GRACE)
        .toCompletableFuture().get(10, TimeUnit.SECONDS);
    assertEquals(List.of("sb-live", "sb-young"), List.copyOf(ledgers.get("acme").keySet()));
    assertEquals(List.of("sb-other-live"), List.copyOf(ledgers.get("beta").keySet()));
    assertEquals(0, ledgers.get("many").size(), "every page was gone through");
    assertEquals(452, result.released());
    assertEquals(454, result.checked());
    assertEquals(false, asked.contains("sb-young"));
  }

  @Test
  void aFailedCheckStopsThePassAndReleasesNothingItCouldNotCheck() {
    reserve("acme", "sb-a", NOW.minus(Duration.ofHours(1)));
    LedgerReconciler.Sandboxes failing = id -> CompletableFuture.failedFuture(new java.util.concurrent.TimeoutException("no answer"));
    var f = LedgerReconciler.pass(ledger, failing, List.of("acme"), NOW, GRACE).toCompletableFuture();
    org.junit.jupiter.api.Assertions.assertThrows(Exception.class, () -> f.get(10, TimeUnit.SECONDS));
    assertEquals(List.of(), released);
  }
}
