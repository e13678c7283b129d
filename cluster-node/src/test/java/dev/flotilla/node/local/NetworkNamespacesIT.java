package dev.flotilla.node.local;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The netns topology of a LocalCluster without any node: what it creates, the fault rules, and
 * that nothing is left after close or after a launcher that died (needs root, ip, nsenter, iptables).
 */
class NetworkNamespacesIT {
  @BeforeAll
  static void root() {
    assumeTrue("root".equals(System.getProperty("user.name")), "network namespaces need root");
  }

  @Test
  void buildsFaultsAndRemovesEverything() throws Exception {
    String prefix;
    List<String> namespaces;
    try (NetworkNamespaces n = NetworkNamespaces.create(2, "NetworkNamespacesIT")) {
      prefix = n.linkPrefix();
      namespaces = List.of(n.namespace(1), n.namespace(2));
      assertTrue(sh("ip", "netns", "list").contains(n.namespace(2)));
      assertTrue(sh("ip", "-n", n.namespace(1), "-4", "addr").contains(n.address(1) + "/24"));
      assertTrue(sh("ip", "-n", n.namespace(2), "link", "show", "lo").contains("UP"), "loopback up in the namespace");
      assertTrue(sh("ip", "-4", "addr", "show", n.bridge()).contains(n.bridgeAddress() + "/24"));

      n.cut(1, 2);
      assertEquals(List.of("-A FLOTILLA-FAULTS -s " + n.address(2) + "/32 -j DROP"), n.rules(1));
      assertEquals(List.of("-A FLOTILLA-FAULTS -s " + n.address(1) + "/32 -j DROP"), n.rules(2));
      n.heal(1, 2);
      assertEquals(List.of(), n.rules(1));
      assertEquals(List.of(), n.rules(2));

      n.cutOneWay(1, 2);
      assertEquals(List.of(), n.rules(1), "one way: node 1 still hears node 2");
      assertEquals(1, n.rules(2).size());
      n.cutFromPostgres(1, 5432);
      assertEquals(2, n.rules(1).size());
      n.healAll();
      assertEquals(List.of(), n.rules(1));
      assertEquals(List.of(), n.rules(2));
    }
    for (String ns : namespaces) assertFalse(sh("ip", "netns", "list").contains(ns), ns + " left behind");
    assertFalse(sh("ip", "-o", "link", "show").contains(prefix), "links " + prefix + "* left behind");
  }

  @Test
  void removesTheTopologyOfADeadLauncherOnly() throws Exception {
    Process gone = new ProcessBuilder("true").start();
    gone.waitFor();
    String dead = "flp" + "dead0";
    sh("ip", "link", "add", dead + "b", "type", "bridge");
    sh("ip", "link", "set", dead + "b", "alias", "flotilla-local pid=" + gone.pid() + " test");
    sh("ip", "netns", "add", "flotilla-dead0-n1");
    try (NetworkNamespaces live = NetworkNamespaces.create(1, "NetworkNamespacesIT")) {
      // create() removed the dead launcher's topology first, and keeps its own
      assertFalse(sh("ip", "-o", "link", "show").contains(dead + "b"));
      assertFalse(sh("ip", "netns", "list").contains("flotilla-dead0-n1"));
      NetworkNamespaces.removeStale();
      assertTrue(sh("ip", "netns", "list").contains(live.namespace(1)), "a live launcher's topology stays");
    } finally {
      sh("ip", "link", "delete", dead + "b");
      sh("ip", "netns", "delete", "flotilla-dead0-n1");
    }
  }

  private static String sh(String... cmd) throws IOException, InterruptedException {
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    p.waitFor();
    return out;
  }
}
