package dev.flotilla.vm.net;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.vm.net.EgressPolicy.Cidr;
import dev.flotilla.vm.net.EgressPolicy.Host;
import java.net.InetAddress;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class EgressPolicyTest {

  @Test
  void noOptionsIsNoNetwork() {
    assertEquals(EgressPolicy.NONE, EgressPolicy.fromOptions(Map.of()));
    assertEquals(EgressPolicy.NONE, EgressPolicy.fromOptions(Map.of("network", "none")));
  }

  @Test
  void egressWithListsOfCidrsAndNames() throws Exception {
    EgressPolicy p = EgressPolicy.fromOptions(Map.of("network", "EGRESS",
        "network-allow", " 10.0.0.0/8, 192.0.2.7 ,2001:db8::/32, Example.COM.",
        "network-deny", "10.1.0.0/16,10.1.0.0/16"));
    assertTrue(p.egress());
    assertEquals(List.of(new Cidr(InetAddress.getByName("10.0.0.0"), 8), new Cidr(InetAddress.getByName("192.0.2.7"), 32),
        new Cidr(InetAddress.getByName("2001:db8::"), 32), new Host("example.com")), p.allow());
    assertEquals(List.of(new Cidr(InetAddress.getByName("10.1.0.0"), 16)), p.deny(), "duplicates kept once");
    assertEquals(List.of("example.com"), p.hostNames());
    assertEquals(p, EgressPolicy.fromOptions(p.toOptions()), "round trip through the node's record");
  }

  @Test
  void refusalsSayWhatToFix() {
    assertMessage(Map.of("network", "bridge"), "network must be none or egress");
    assertMessage(Map.of("network-allow", "10.0.0.0/8"), "--allow needs --network egress");
    assertMessage(Map.of("network", "none", "network-deny", "10.0.0.0/8"), "--deny needs --network egress");
    assertMessage(Map.of("network", "egress", "network-allow", "10.0.0.1/8"), "did you mean 10.0.0.0/8?");
    assertMessage(Map.of("network", "egress", "network-allow", "10.0.0.0/33"), "at most 32");
    assertMessage(Map.of("network", "egress", "network-allow", "2001:db8::/129"), "at most 128");
    assertMessage(Map.of("network", "egress", "network-deny", "256.1.1.1"), "256 > 255");
    assertMessage(Map.of("network", "egress", "network-deny", "10.0.0"), "not an IPv4 address");
    assertMessage(Map.of("network", "egress", "network-deny", "fe80::1%eth0"), "zone ids");
    assertMessage(Map.of("network", "egress", "network-deny", "a,,b"), "empty entry");
    assertMessage(Map.of("network", "egress", "network-deny", "-bad.example"), "neither a CIDR");
    assertMessage(Map.of("network", "egress", "network-deny", "under_score.example"), "neither a CIDR");
    assertMessage(Map.of("network", "egress", "network-deny", "x".repeat(64) + ".example"), "neither a CIDR");
    assertMessage(Map.of("network", "egress", "network-deny", "10.0.0.0/x"), "prefix length must be a number");
    assertMessage(Map.of("network", "egress", "network-deny", "::ffff:10.0.0.1"), "IPv4-mapped");
    String many = String.join(",", java.util.stream.IntStream.range(0, 65).mapToObj(i -> "10.0." + i + ".0/24").toList());
    assertMessage(Map.of("network", "egress", "network-allow", many), "at most 64 entries");
  }

  private static void assertMessage(Map<String, String> options, String part) {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> EgressPolicy.fromOptions(options));
    assertTrue(e.getMessage().contains(part), e.getMessage());
  }

  @Test
  void cidrContains() throws Exception {
    Cidr c = (Cidr) EgressPolicy.parseDestination("10.1.0.0/16");
    assertTrue(c.contains(InetAddress.getByName("10.1.255.1")));
    assertTrue(!c.contains(InetAddress.getByName("10.2.0.1")));
    assertTrue(!c.contains(InetAddress.getByName("::1")));
    assertTrue(((Cidr) EgressPolicy.parseDestination("0.0.0.0/0")).contains(InetAddress.getByName("1.2.3.4")));
  }

  @Test
  void endpoints() {
    assertEquals(new Endpoint("10.0.0.5", 5432), Endpoint.parse("10.0.0.5:5432"));
    assertEquals(new Endpoint("db.example", 5432), Endpoint.parse("DB.example:5432"));
    assertEquals(new Endpoint("2001:db8::1", 25520), Endpoint.parse("[2001:db8::1]:25520"));
    for (String bad : List.of("10.0.0.5", "10.0.0.5:0", "10.0.0.5:70000", "2001:db8::1:80", "10.0.0.0/8:80", "h:x")) {
      assertThrows(IllegalArgumentException.class, () -> Endpoint.parse(bad), bad);
    }
  }
}
