package dev.flotilla.vm.net;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.net.InetAddress;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

class NameGrantsTest {
  record Call(boolean deny, List<InetAddress> addresses, long ttl) {}

  final List<Call> calls = new ArrayList<>();
  final AtomicLong now = new AtomicLong(1_000_000);
  boolean failing;
  final NameGrants.Sets sets = (deny, addresses, ttl) -> {
    if (failing) throw new IOException("ipset failed");
    calls.add(new Call(deny, List.copyOf(addresses), ttl));
  };

  NameGrants grants(int max) {
    return new NameGrants(sets, Duration.ofSeconds(30), Duration.ofHours(1), max, 1000, now::get);
  }

  static InetAddress ip(String s) throws Exception {
    return InetAddress.getByName(s);
  }

  @Test
  void theTtlIsBoundedBothWays() throws Exception {
    NameGrants g = grants(10);
    assertEquals(30, g.grant(false, List.of(ip("192.0.2.1")), 0));
    assertEquals(3600, g.grant(false, List.of(ip("192.0.2.2")), 604800));
    assertEquals(300, g.grant(true, List.of(ip("192.0.2.3")), 300));
    assertEquals(List.of(new Call(false, List.of(ip("192.0.2.1")), 30), new Call(false, List.of(ip("192.0.2.2")), 3600),
        new Call(true, List.of(ip("192.0.2.3")), 300)), calls);
    assertEquals(now.get() + 300_000, g.granted(true).get(ip("192.0.2.3")));
    assertTrue(g.granted(false).keySet().containsAll(List.of(ip("192.0.2.1"), ip("192.0.2.2"))));
  }

  @Test
  void anAddressWithHalfItsTtlToGoIsNotAddedAgainAndIsRefreshedAfter() throws Exception {
    NameGrants g = grants(10);
    g.grant(false, List.of(ip("192.0.2.1")), 100);
    now.addAndGet(40_000);
    g.grant(false, List.of(ip("192.0.2.1")), 100); // 60 s of 100 left: kept
    assertEquals(1, calls.size());
    now.addAndGet(20_000);
    g.grant(false, List.of(ip("192.0.2.1"), ip("192.0.2.1")), 100); // 40 s left: refreshed, once
    assertEquals(new Call(false, List.of(ip("192.0.2.1")), 100), calls.get(1));
    assertEquals(now.get() + 100_000, g.granted(false).get(ip("192.0.2.1")));
  }

  @Test
  void grantsExpireAndAFullListRefusesUntilTheyDo() throws Exception {
    NameGrants g = grants(2);
    g.grant(false, List.of(ip("192.0.2.1"), ip("192.0.2.2")), 30);
    IOException full = assertThrows(IOException.class, () -> g.grant(false, List.of(ip("192.0.2.3")), 30));
    assertTrue(full.getMessage().contains("full"), full.getMessage());
    assertEquals(1, calls.size(), "nothing added to a full set");
    g.grant(true, List.of(ip("192.0.2.3")), 30); // the other list has its own room
    now.addAndGet(30_001);
    assertTrue(g.granted(false).isEmpty());
    g.grant(false, List.of(ip("192.0.2.3")), 30);
    assertEquals(List.of(ip("192.0.2.3")), List.copyOf(g.granted(false).keySet()));
  }

  @Test
  void aFailedSetUpdateGrantsNothing() throws Exception {
    NameGrants g = grants(10);
    failing = true;
    assertThrows(IOException.class, () -> g.grant(true, List.of(ip("192.0.2.1")), 60));
    assertTrue(g.granted(true).isEmpty());
    failing = false;
    g.grant(true, List.of(ip("192.0.2.1")), 60);
    assertEquals(1, calls.size(), "tried again once the set works");
  }

  @Test
  void setUpdatesAreLimitedInRate() throws Exception {
    NameGrants g = new NameGrants(sets, Duration.ofSeconds(30), Duration.ofHours(1), 100, 2, now::get);
    for (int i = 0; i < 4; i++) g.grant(false, List.of(ip("192.0.2." + (i + 1))), 60); // a burst of twice the rate
    IOException fast = assertThrows(IOException.class, () -> g.grant(false, List.of(ip("192.0.2.9")), 60));
    assertTrue(fast.getMessage().contains("per second"), fast.getMessage());
    g.grant(false, List.of(ip("192.0.2.1")), 60); // nothing to update: no limit
    now.addAndGet(500);
    g.grant(false, List.of(ip("192.0.2.9")), 60);
    assertEquals(5, calls.size());
  }
}
