package dev.flotilla.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.cluster.Placement.Allocate;
import dev.flotilla.cluster.Placement.Region;
import dev.flotilla.cluster.Placement.Wait;
import dev.flotilla.cluster.Placement.Why;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class PlacementTest {
  static final Duration GRACE = Duration.ofSeconds(15);
  static final Duration MARGIN = Duration.ofSeconds(3);
  final Region<String> a = new Region<>("A", "10.0.0.1:25520", true, 3);
  final Region<String> b = new Region<>("B", "10.0.0.2:25520", true, 1);
  final Region<String> leaving = new Region<>("L", "10.0.0.4:25520", false, 0);

  @Test
  void aNewShardGoesToTheUpRegionWithFewestShards() {
    var d = Placement.decide(List.of(a, b, leaving), "", false, Duration.ZERO, GRACE, null, MARGIN).orElseThrow();
    assertEquals(new Allocate<>("B", false), d);
  }

  @Test
  void aShardWhoseHomeIsRegisteredAndUpGoesHomeEvenWhenItIsTheBusiest() {
    var d = Placement.decide(List.of(a, b), "10.0.0.1:25520", false, Duration.ofSeconds(2), GRACE, null, MARGIN).orElseThrow();
    assertEquals(new Allocate<>("A", true), d);
  }

  @Test
  void aShardWaitsForItsRejoiningHomeForTheRestOfTheGrace() {
    var d = Placement.decide(List.of(a, b), "10.0.0.3:25520", true, Duration.ofSeconds(4), GRACE, null, MARGIN).orElseThrow();
    assertEquals(new Wait<String>("10.0.0.3:25520", Duration.ofSeconds(11), Why.HOME_REJOINING), d);
  }

  @Test
  void aShardWhoseHomeIsNotRejoiningOrWaitedItsGraceGoesByLoad() {
    assertEquals(new Allocate<>("B", false),
        Placement.decide(List.of(a, b), "10.0.0.3:25520", false, Duration.ZERO, GRACE, null, MARGIN).orElseThrow(), "home gone for good");
    assertEquals(new Allocate<>("B", false),
        Placement.decide(List.of(a, b), "10.0.0.3:25520", true, GRACE, GRACE, null, MARGIN).orElseThrow(), "grace used up");
  }

  @Test
  void aShardWhoseHomeWasJustRemovedWaitsTheRestOfTheMarginThenGoesByLoad() {
    var d = Placement.decide(List.of(a, b), "10.0.0.3:25520", false, Duration.ZERO, GRACE, Duration.ofSeconds(1), MARGIN);
    assertEquals(new Wait<String>("10.0.0.3:25520", Duration.ofSeconds(2), Why.REMOVAL_MARGIN), d.orElseThrow());
    assertEquals(new Allocate<>("B", false),
        Placement.decide(List.of(a, b), "10.0.0.3:25520", false, Duration.ZERO, GRACE, MARGIN, MARGIN).orElseThrow(),
        "margin over");
  }

  @Test
  void aHomeThatRejoinsSkipsTheMarginItsOldJvmIsGone() {
    // the new incarnation's member is there (so the home is not "gone"): wait for its region, not the margin
    var d = Placement.decide(List.of(a, b), "10.0.0.3:25520", true, Duration.ZERO, GRACE, null, MARGIN).orElseThrow();
    assertEquals(Why.HOME_REJOINING, ((Wait<String>) d).why());
    // without a grace (tenants: nothing to re-attach to) it goes by load at once
    assertEquals(new Allocate<>("B", false),
        Placement.decide(List.of(a, b), "10.0.0.3:25520", true, Duration.ZERO, Duration.ZERO, null, MARGIN).orElseThrow());
  }

  @Test
  void aNewShardOrOneWithAnUnknownHomeNeverWaitsTheMargin() {
    assertEquals(new Allocate<>("B", false),
        Placement.decide(List.of(a, b), "", false, Duration.ZERO, GRACE, null, MARGIN).orElseThrow());
  }

  @Test
  void aHomeThatIsNotUpIsNotAnAllocationTarget() {
    var notUpHome = new Region<>("H", "10.0.0.3:25520", false, 0);
    var d = Placement.decide(List.of(a, b, notUpHome), "10.0.0.3:25520", true, Duration.ZERO, GRACE, null, MARGIN).orElseThrow();
    assertTrue(d instanceof Wait, "waits for the home to be Up, got " + d);
  }

  @Test
  void nothingUpNothingToDecide() {
    assertTrue(Placement.decide(List.of(leaving), "", false, Duration.ZERO, GRACE, null, MARGIN).isEmpty());
  }

  @Test
  void rememberKeepsTheLastHostOfEveryShard() {
    Map<String, String> homes = new HashMap<>();
    assertEquals(Map.of("1", "h1:1", "2", "h1:1"),
        Placement.remember(homes, Map.of("A", List.of("1", "2")), r -> r.equals("A") ? "h1:1" : "h2:2"));
    assertEquals(Map.of("2", "h2:2"), Placement.remember(homes, Map.of("B", List.of("2")), r -> r.equals("A") ? "h1:1" : "h2:2"),
        "only what changed");
    assertEquals(Map.of("1", "h1:1", "2", "h2:2"), homes);
  }
}
