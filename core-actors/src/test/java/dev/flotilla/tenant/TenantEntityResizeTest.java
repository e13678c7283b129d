package dev.flotilla.tenant;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.ConfigFactory;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import org.apache.pekko.Done;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.pattern.StatusReply;
import org.apache.pekko.persistence.testkit.javadsl.EventSourcedBehaviorTestKit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

/**
 * The ledger's charge for a live resize: what grows is checked against the quota, what shrinks is
 * always taken back, and a charge made from a stale view of the reservation is refused. Through the
 * real Kryo serializer (the testkit's serialization check).
 */
class TenantEntityResizeTest {
  static final ActorTestKit testKit = ActorTestKit.create(
      EventSourcedBehaviorTestKit.config().withFallback(ConfigFactory.load()));

  @AfterAll
  static void shutdown() {
    testKit.shutdownTestKit();
  }

  @Test
  void growthIsChargedWithinTheQuotaShrinkingAlwaysTakesAndAStaleChargeIsRefused() {
    var kit = EventSourcedBehaviorTestKit.<TenantEntity.Command, TenantEntity.Event, TenantEntity.State>create(testKit.system(),
        TenantEntity.create("t-resize", new TenantEntity.Quota(10, 4, 1024)));
    reserve(kit, "sb-a", 1, 512);
    reserve(kit, "sb-b", 1, 256);

    // grows within the quota: charged
    var ok = resize(kit, "sb-a", 1, 512, 1, 768);
    assertTrue(ok.reply().isSuccess());
    assertEquals(768, kit.getState().reservations().get("sb-a").memoryMiB());
    assertEquals(Map.of(), kit.getState().reservations().get("sb-a").labels());

    // past the memory quota (768 + 256 = 1024 in use; 1025 would not fit): refused, nothing recorded
    var over = resize(kit, "sb-a", 1, 768, 1, 769);
    assertEquals("RESOURCE_EXHAUSTED: tenant 't-resize' would use 1025 MiB of memory, over its quota of 1024 MiB (1024 MiB in use)",
        over.reply().getError().getMessage());
    assertTrue(over.events().isEmpty());
    // past the vCPU quota
    var cpus = resize(kit, "sb-a", 1, 768, 4, 768);
    assertTrue(cpus.reply().getError().getMessage().startsWith("RESOURCE_EXHAUSTED: tenant 't-resize' would use 5 vCPUs"),
        cpus.reply().getError().getMessage());

    // from a stale view (another resize got there first): refused
    var stale = resize(kit, "sb-a", 1, 512, 1, 600);
    assertTrue(stale.reply().getError().getMessage().startsWith("FAILED_PRECONDITION: sandbox sb-a was resized meanwhile"),
        stale.reply().getError().getMessage());

    // shrinking always takes, even with the tenant at its quota
    var back = resize(kit, "sb-a", 1, 768, 1, 256);
    assertTrue(back.reply().isSuccess());
    assertEquals(List.of(1, 256), List.of(kit.getState().reservations().get("sb-a").vcpus(),
        kit.getState().reservations().get("sb-a").memoryMiB()));
    // an unknown sandbox
    assertTrue(resize(kit, "sb-x", 1, 1, 1, 2).reply().getError().getMessage().startsWith("NOT_FOUND"));
  }

  static void reserve(EventSourcedBehaviorTestKit<TenantEntity.Command, TenantEntity.Event, TenantEntity.State> kit, String id,
      int vcpus, int memory) {
    var r = kit.<StatusReply<Boolean>>runCommand(ref -> new TenantEntity.Reserve(
        new TenantEntity.Reservation(id, vcpus, memory, Map.of(), Instant.now()), ref));
    assertTrue(r.reply().getValue());
  }

  static EventSourcedBehaviorTestKit.CommandResultWithReply<TenantEntity.Command, TenantEntity.Event, TenantEntity.State, StatusReply<Done>>
      resize(EventSourcedBehaviorTestKit<TenantEntity.Command, TenantEntity.Event, TenantEntity.State> kit, String id,
          int fromV, int fromM, int toV, int toM) {
    return kit.runCommand(ref -> new TenantEntity.Resize(id, fromV, fromM, toV, toM, ref));
  }
}
