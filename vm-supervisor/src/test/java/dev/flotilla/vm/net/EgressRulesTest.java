package dev.flotilla.vm.net;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.vm.net.EgressPolicy.Cidr;
import java.net.InetAddress;
import java.nio.charset.StandardCharsets;
import java.util.List;
import org.junit.jupiter.api.Test;

class EgressRulesTest {

  private static InetAddress a(String s) throws Exception {
    return InetAddress.getByName(s);
  }

  private static EgressRules rules(List<Cidr> deny, List<Cidr> allow, boolean allowWritten) throws Exception {
    return new EgressRules(16842752, "flotilla:abc:fl-sb-1", List.of(a("10.255.255.53"), a("fd00::53")),
        List.of(new EgressRules.Target(a("10.9.9.9"), 5432), new EgressRules.Target(a("2001:db8::9"), 25520)),
        deny, allow, allowWritten);
  }

  @Test
  void orderIsDnsThenNodeRefusalsThenDenyThenAllowThenTheEnd() throws Exception {
    String v4 = rules(List.of((Cidr) EgressPolicy.parseDestination("10.1.0.0/16")),
        List.of((Cidr) EgressPolicy.parseDestination("10.0.0.0/8")), true).restoreScript(false);
    List<String> l = v4.lines().toList();
    int dns = indexOf(l, "-d 10.255.255.53/32 -p udp --dport 53 -j RETURN");
    int local = indexOf(l, "--dst-type LOCAL -j FLSBR-16842752");
    int meta = indexOf(l, "-d 169.254.0.0/16 -j FLSBR-16842752");
    int prot = indexOf(l, "-d 10.9.9.9/32 -p tcp --dport 5432 -j FLSBR-16842752");
    int deny = indexOf(l, "-d 10.1.0.0/16 -j FLSBR-16842752");
    int allow = indexOf(l, "-d 10.0.0.0/8 -j RETURN");
    int end = indexOf(l, "-A FLSB-16842752 -j FLSBR-16842752");
    assertTrue(dns < local && local < meta && meta < prot && prot < deny && deny < allow && allow < end, v4);
    assertTrue(v4.contains("-A FLSBR-16842752 -p tcp -j REJECT --reject-with tcp-reset"), v4);
    assertTrue(!v4.contains("2001:db8") && !v4.contains("fd00::53"), "no IPv6 in the IPv4 script: " + v4);
    assertEquals("COMMIT", l.get(l.size() - 1));
  }

  @Test
  void anEmptyAllowListEndsInReturnAndAnAllowListOfUnresolvedNamesInRefusal() throws Exception {
    assertTrue(!rules(List.of(), List.of(), false).restoreScript(false).contains("-A FLSB-16842752 -j FLSBR-16842752"));
    assertTrue(rules(List.of(), List.of(), true).restoreScript(false).contains("-A FLSB-16842752 -j FLSBR-16842752"));
  }

  @Test
  void ipv6() throws Exception {
    String v6 = rules(List.of(), List.of((Cidr) EgressPolicy.parseDestination("2001:db8::/32")), true).restoreScript(true);
    assertTrue(v6.contains("-d fd00:0:0:0:0:0:0:53/128 -p udp --dport 53 -j RETURN"), v6);
    assertTrue(v6.contains("-d fe80::/10 -j FLSBR-16842752"), v6);
    assertTrue(v6.contains("-d 2001:db8:0:0:0:0:0:9/128 -p udp --dport 25520"), v6);
    assertTrue(v6.contains("-d 2001:db8:0:0:0:0:0:0/32 -j RETURN"), v6);
    assertTrue(v6.contains("--reject-with icmp6-port-unreachable"), v6);
    assertTrue(!v6.contains("10.255.255.53"), v6);
  }

  /** The real tools accept both scripts ({@code --test}: parsed and checked by the kernel's tables, nothing applied). */
  @Test
  void iptablesRestoreAcceptsTheScripts() throws Exception {
    EgressRules r = rules(List.of((Cidr) EgressPolicy.parseDestination("10.1.0.0/16")),
        List.of((Cidr) EgressPolicy.parseDestination("10.0.0.0/8"), (Cidr) EgressPolicy.parseDestination("2001:db8::/32")), true);
    for (boolean v6 : new boolean[] {false, true}) {
      Process p = new ProcessBuilder(v6 ? "ip6tables-restore" : "iptables-restore", "--noflush", "--test").redirectErrorStream(true).start();
      try (var in = p.getOutputStream()) {
        in.write(r.restoreScript(v6).getBytes(StandardCharsets.UTF_8));
      }
      String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      assertEquals(0, p.waitFor(), (v6 ? "ip6" : "ip") + "tables-restore refused: " + out + "\n" + r.restoreScript(v6));
    }
  }

  @Test
  void namesMatchedAtConnectionTimeSendDnsOnlyToTheProxyAndMatchTheSetsAfterTheirLists() throws Exception {
    EgressRules r = new EgressRules(16842752, "flotilla:abc:fl-sb-1", List.of(a("10.255.255.53")), List.of(),
        List.of((Cidr) EgressPolicy.parseDestination("10.1.0.0/16")), List.of((Cidr) EgressPolicy.parseDestination("10.0.0.0/8")), true,
        new EgressRules.NameMatch(40053, false));
    List<String> l = r.restoreScript(false).lines().toList();
    int proxy = indexOf(l, "-d 127.0.0.1/32 -p udp --dport 40053 -j RETURN");
    int proxyTcp = indexOf(l, "-d 127.0.0.1/32 -p tcp --dport 40053 -j RETURN");
    int otherDns = indexOf(l, "-A FLSB-16842752 -p udp --dport 53 -j FLSBR-16842752");
    int local = indexOf(l, "--dst-type LOCAL -j FLSBR-16842752");
    int deny = indexOf(l, "-d 10.1.0.0/16 -j FLSBR-16842752");
    int denySet = indexOf(l, "-m set --match-set FLSBD4-16842752 dst -j FLSBR-16842752");
    int established = indexOf(l, "-m conntrack --ctstate ESTABLISHED --ctdir ORIGINAL -j RETURN");
    int allow = indexOf(l, "-d 10.0.0.0/8 -j RETURN");
    int allowSet = indexOf(l, "-m set --match-set FLSBA4-16842752 dst -j RETURN");
    int end = indexOf(l, "-A FLSB-16842752 -j FLSBR-16842752");
    assertTrue(proxy < otherDns && proxyTcp < otherDns && otherDns < local && local < deny && deny < denySet
        && denySet < established && established < allow && allow < allowSet && allowSet < end, String.join("\n", l));
    assertTrue(l.stream().noneMatch(x -> x.contains("10.255.255.53")), "the resolver is reached only through the proxy");
    String v6 = r.restoreScript(true);
    assertTrue(!v6.contains("::1/128") && v6.contains("-p tcp --dport 53 -j FLSBR-16842752"), "no IPv6 proxy: IPv6 DNS refused\n" + v6);
    assertTrue(v6.contains("--match-set FLSBA6-16842752"), v6);
    String v6proxy = new EgressRules(16842752, "c", List.of(), List.of(), List.of(), List.of(), false, new EgressRules.NameMatch(40053, true))
        .restoreScript(true);
    assertTrue(v6proxy.contains("-d ::1/128 -p udp --dport 40053 -j RETURN"), v6proxy);
    assertEquals("*raw\n:FLSBN-16842752 - [0:0]\n-A FLSBN-16842752 -p udp --dport 53 -j CT --zone-orig 258\n"
        + "-A FLSBN-16842752 -p tcp --dport 53 -j CT --zone-orig 258\nCOMMIT\n"
        + "*nat\n:FLSBN-16842752 - [0:0]\n-A FLSBN-16842752 -p udp --dport 53 -j REDIRECT --to-ports 40053\n"
        + "-A FLSBN-16842752 -p tcp --dport 53 -j REDIRECT --to-ports 40053\nCOMMIT\n", NameSets.natScript(16842752, 40053));
  }

  /** With the sets on the host, the real tools accept the scripts of name matching too. */
  @Test
  void iptablesRestoreAcceptsTheScriptsOfNameMatching() throws Exception {
    long uid = 16777216L + 268435456L + 7; // past the subordinate ids of setup-host.sh: no sandbox has it
    NameSets sets = new NameSets(uid);
    try {
      sets.create(true, 64);
      EgressRules r = new EgressRules(uid, "flotilla:test:x", List.of(), List.of(), List.of(), List.of(), true,
          new EgressRules.NameMatch(40053, true));
      for (boolean v6 : new boolean[] {false, true}) {
        for (String script : List.of(r.restoreScript(v6), NameSets.natScript(uid, 40053))) {
          Process p = new ProcessBuilder(v6 ? "ip6tables-restore" : "iptables-restore", "--noflush", "--test").redirectErrorStream(true).start();
          try (var in = p.getOutputStream()) {
            in.write(script.getBytes(StandardCharsets.UTF_8));
          }
          String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
          assertEquals(0, p.waitFor(), (v6 ? "ip6" : "ip") + "tables-restore refused: " + out + "\n" + script);
        }
      }
      sets.add(false, List.of(a("192.0.2.1"), a("2001:db8::1")), 30);
      assertTrue(sets.members(false, false).contains("192.0.2.1 timeout"), sets.members(false, false));
      assertTrue(sets.members(false, true).contains("2001:db8::1 timeout"), sets.members(false, true));
    } finally {
      sets.remove();
    }
    assertTrue(!sets.present(), "sets removed");
  }

  @Test
  void pastaCommandForwardsNoPortsAndDoesNotMapTheGateway() throws Exception {
    List<String> cmd = PastaCommand.of(java.nio.file.Path.of("/usr/bin/pasta"), java.nio.file.Path.of("/r/resolv"),
        java.nio.file.Path.of("/r/u"), java.nio.file.Path.of("/r/n"), java.nio.file.Path.of("/r/p"), a("169.254.1.1"));
    String s = String.join(" ", cmd);
    assertTrue(s.startsWith("setsid unshare --mount --propagation private -- sh -c"), s);
    assertTrue(s.contains("sh /r/resolv nsenter --user=/r/u -- /usr/bin/pasta --foreground --config-net --netns /r/n"), s);
    assertTrue(s.contains("-t none -u none -T none -U none --no-map-gw"), s);
    assertTrue(s.contains("--dns-forward 169.254.1.1 --pid /r/p"), s);
  }

  private static int indexOf(List<String> lines, String part) {
    for (int i = 0; i < lines.size(); i++) if (lines.get(i).contains(part)) return i;
    throw new AssertionError("no line with '" + part + "' in\n" + String.join("\n", lines));
  }
}
