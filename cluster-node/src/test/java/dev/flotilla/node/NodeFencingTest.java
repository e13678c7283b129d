package dev.flotilla.node;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import java.time.Duration;
import org.junit.jupiter.api.Test;

class NodeFencingTest {
  /** The node's shipped configuration (application.conf: cluster.conf, node.conf, ...) over Pekko's defaults. */
  static final Config SHIPPED = ConfigFactory.load();

  @Test
  void theShippedLeaseEndsBeforeTheClusterCanTakeOverAFrozenNodesSandboxes() {
    Duration lease = SHIPPED.getDuration("flotilla.vm.supervisor.lease");
    Duration takeover = NodeFencing.checkLease(SHIPPED, lease);
    assertEquals(Duration.ofSeconds(12), takeover, "3 s acceptable pause + 6 s stable-after + 3 s down-removal-margin");
    assertTrue(lease.plus(NodeFencing.LEASE_MARGIN).compareTo(takeover) <= 0);
  }

  @Test
  void aLeaseThatOutlivesTheTakeoverIsRefusedWithWhatToChange() {
    var e = assertThrows(IllegalStateException.class, () -> NodeFencing.checkLease(SHIPPED, Duration.ofMillis(11_500)));
    assertTrue(e.getMessage().contains("flotilla.vm.supervisor.lease = 11500 ms"), e.getMessage());
    assertTrue(e.getMessage().contains("12000 ms"), e.getMessage());
    assertTrue(e.getMessage().contains("stable-after"), e.getMessage());
  }

  @Test
  void aLeaseThatOutlivesTheRejoinGraceIsRefusedWithWhatToChange() {
    Config roomy = ConfigFactory.parseString("pekko.cluster.split-brain-resolver.stable-after = 16s").withFallback(SHIPPED);
    var e = assertThrows(IllegalStateException.class, () -> NodeFencing.checkLease(roomy, Duration.ofSeconds(20)));
    assertTrue(e.getMessage().contains("flotilla.sandbox.placement.rejoin-grace = 15000 ms must be at least"
        + " flotilla.vm.supervisor.lease = 20000 ms + 1000 ms"), e.getMessage());
    Config graceful = ConfigFactory.parseString("flotilla.sandbox.placement.rejoin-grace = 21s").withFallback(roomy);
    assertEquals(Duration.ofSeconds(22), NodeFencing.checkLease(graceful, Duration.ofSeconds(20)));
  }

  @Test
  void aJournalTransactionTimeoutThatOutlivesTheTakeoverIsRefusedWithWhatToChange() {
    assertEquals(Duration.ofSeconds(3), SHIPPED.getDuration("flotilla.persistence.idle-in-transaction-timeout"), "shipped");
    Config slow = ConfigFactory.parseString("flotilla.persistence.idle-in-transaction-timeout = 11500ms").withFallback(SHIPPED);
    var e = assertThrows(IllegalStateException.class, () -> NodeFencing.checkLease(slow, Duration.ZERO));
    assertTrue(e.getMessage().contains("flotilla.persistence.idle-in-transaction-timeout = 11500 ms must end at least 1000 ms before"
        + " the cluster can restart a frozen node's sandboxes elsewhere (12000 ms)"), e.getMessage());
    Config off = ConfigFactory.parseString("flotilla.persistence.idle-in-transaction-timeout = 0s").withFallback(SHIPPED);
    assertEquals(Duration.ofSeconds(12), NodeFencing.checkLease(off, Duration.ofSeconds(10)), "0 is off: nothing to check");
  }

  @Test
  void noLeaseNeedsNoCheckAndAnOffMarginIsStableAfterAsTheSplitBrainResolverTakesIt() {
    NodeFencing.checkLease(SHIPPED, Duration.ZERO);
    Config noMargin = ConfigFactory.parseString("pekko.cluster.down-removal-margin = off").withFallback(SHIPPED);
    assertEquals(Duration.ofSeconds(15), NodeFencing.checkLease(noMargin, Duration.ofSeconds(8)), "3 s + 6 s + 6 s");
    assertThrows(IllegalStateException.class, () -> NodeFencing.checkLease(noMargin, Duration.ofMillis(14_500)));
  }
}
