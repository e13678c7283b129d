package dev.flotilla.vm.net;

import dev.flotilla.vm.net.EgressPolicy.Cidr;
import java.net.Inet6Address;
import java.net.InetAddress;
import java.util.ArrayList;
import java.util.List;

/**
 * The host firewall rules of one egress sandbox, as {@code iptables-restore --noflush} input (one
 * script per address family). They match the sandbox's traffic by the uid that owns its sockets in
 * the host's network namespace (pasta runs as the sandbox's root's host uid, and nothing else of
 * that uid runs there): {@code OUTPUT -m owner --uid-owner UID -j FLSB-UID}. In that chain, first
 * match wins:
 * <ol>
 *   <li>UDP to the node's DNS servers, port 53: returned to OUTPUT (pasta's DNS forwarding; the
 *       only way a sandbox reaches a local address, when the resolver is one)</li>
 *   <li>refused: destinations of type LOCAL (every address of the node, loopback included, so also
 *       every port another sandbox's pasta could hold), BROADCAST, MULTICAST; link-local (with the
 *       169.254.169.254 metadata address); the protected endpoints (TCP and UDP)</li>
 *   <li>refused: the deny list</li>
 *   <li>returned to OUTPUT: the allow list</li>
 *   <li>refused if the written allow list was not empty; else returned to OUTPUT</li>
 * </ol>
 * "Returned" means the host's own OUTPUT rules still apply: these rules only take away. Refusing
 * is a TCP reset for TCP (a connect fails at once with ECONNREFUSED, which pasta passes on to
 * the sandbox) and ICMP port unreachable otherwise.
 *
 * <p>Without {@code names}, host names in the lists are resolved by the node before rendering:
 * the rules hold addresses. With {@code names} ({@link NameMatch}), host names are matched at
 * connection time: the uid's DNS is redirected to its {@link DnsProxy} ({@link NameSets}), which
 * fills the uid's ipsets from the answers the sandbox gets, and the chain changes so:
 * <ol>
 *   <li>instead of 1: UDP and TCP to the proxy's loopback port returned; any other port 53 refused</li>
 *   <li>after 3: refused, the deny set (addresses the sandbox looked up for a denied name)</li>
 *   <li>then: returned, packets of a connection this uid opened that is established (it was
 *       allowed when it started: a name's addresses expiring from the set end no connection)</li>
 *   <li>after 4: returned, the allow set</li>
 * </ol>
 *
 * @param uid the sandbox's root's host uid (pasta's)
 * @param comment marks the OUTPUT jump, so that a node finds its own rules again (no spaces)
 * @param dnsServers the resolvers pasta forwards the sandbox's DNS to
 * @param protectedTargets node endpoints, resolved
 * @param deny deny list, resolved
 * @param allow allow list, resolved
 * @param allowListWritten whether the spec's allow list had any entry (one whose names resolve to
 *     nothing still allows nothing)
 * @param names null: names resolved by the node; else how they are matched at connection time
 */
public record EgressRules(long uid, String comment, List<InetAddress> dnsServers, List<Target> protectedTargets,
    List<Cidr> deny, List<Cidr> allow, boolean allowListWritten, NameMatch names) {

  /** A resolved protected endpoint. */
  public record Target(InetAddress address, int port) {}

  /**
   * @param proxyPort the sandbox's {@link DnsProxy} port on loopback
   * @param proxyV6 whether it listens on ::1 too (else IPv6 DNS is refused)
   */
  public record NameMatch(int proxyPort, boolean proxyV6) {
    public NameMatch {
      if (proxyPort < 1 || proxyPort > 65535) throw new IllegalArgumentException("port out of range: " + proxyPort);
    }
  }

  /** Names resolved by the node (no {@link NameMatch}). */
  public EgressRules(long uid, String comment, List<InetAddress> dnsServers, List<Target> protectedTargets,
      List<Cidr> deny, List<Cidr> allow, boolean allowListWritten) {
    this(uid, comment, dnsServers, protectedTargets, deny, allow, allowListWritten, null);
  }

  public EgressRules {
    if (uid <= 0) throw new IllegalArgumentException("a sandbox uid is never root: " + uid);
    if (!comment.matches("[A-Za-z0-9:._-]{1,200}")) throw new IllegalArgumentException("comment must be a plain word: " + comment);
    dnsServers = List.copyOf(dnsServers);
    protectedTargets = List.copyOf(protectedTargets);
    deny = List.copyOf(deny);
    allow = List.copyOf(allow);
  }

  public static final String CHAIN_PREFIX = "FLSB-";
  public static final String REFUSE_PREFIX = "FLSBR-";

  public static String chain(long uid) {
    return CHAIN_PREFIX + uid;
  }

  public static String refuseChain(long uid) {
    return REFUSE_PREFIX + uid;
  }

  /** The OUTPUT rule that sends the uid's packets to its chain (without {@code -I OUTPUT}). */
  public List<String> jump() {
    return jump(uid, comment);
  }

  public static List<String> jump(long uid, String comment) {
    return List.of("-m", "owner", "--uid-owner", Long.toString(uid), "-m", "comment", "--comment", comment, "-j", chain(uid));
  }

  /** {@code iptables-restore --noflush} input for IPv4, or {@code ip6tables-restore} for IPv6: it replaces both chains atomically. */
  public String restoreScript(boolean v6) {
    String c = chain(uid);
    String r = refuseChain(uid);
    List<String> l = new ArrayList<>();
    l.add("*filter");
    l.add(":" + c + " - [0:0]");
    l.add(":" + r + " - [0:0]");
    l.add("-A " + r + " -p tcp -j REJECT --reject-with tcp-reset");
    l.add("-A " + r + " -j REJECT --reject-with " + (v6 ? "icmp6-port-unreachable" : "icmp-port-unreachable"));
    if (names == null) {
      for (InetAddress d : dnsServers) {
        if (isV6(d) == v6) l.add("-A " + c + " -d " + host(d) + " -p udp --dport 53 -j RETURN");
      }
    } else {
      if (!v6 || names.proxyV6()) {
        for (String p : List.of("udp", "tcp")) {
          l.add("-A " + c + " -d " + (v6 ? "::1/128" : "127.0.0.1/32") + " -p " + p + " --dport " + names.proxyPort() + " -j RETURN");
        }
      }
      l.add("-A " + c + " -p udp --dport 53 -j " + r);
      l.add("-A " + c + " -p tcp --dport 53 -j " + r);
    }
    l.add("-A " + c + " -m addrtype --dst-type LOCAL -j " + r);
    if (!v6) {
      l.add("-A " + c + " -m addrtype --dst-type BROADCAST -j " + r);
      l.add("-A " + c + " -d 169.254.0.0/16 -j " + r);
      l.add("-A " + c + " -d 224.0.0.0/4 -j " + r);
      l.add("-A " + c + " -d 0.0.0.0/8 -j " + r);
    } else {
      l.add("-A " + c + " -d fe80::/10 -j " + r);
      l.add("-A " + c + " -d ff00::/8 -j " + r);
      l.add("-A " + c + " -d ::/128 -j " + r);
      l.add("-A " + c + " -d ::ffff:0:0/96 -j " + r);
    }
    l.add("-A " + c + " -m addrtype --dst-type MULTICAST -j " + r);
    for (Target t : protectedTargets) {
      if (isV6(t.address()) != v6) continue;
      l.add("-A " + c + " -d " + host(t.address()) + " -p tcp --dport " + t.port() + " -j " + r);
      l.add("-A " + c + " -d " + host(t.address()) + " -p udp --dport " + t.port() + " -j " + r);
    }
    for (Cidr d : deny) if (d.ipv6() == v6) l.add("-A " + c + " -d " + d.text() + " -j " + r);
    if (names != null) {
      l.add("-A " + c + " -m set --match-set " + NameSets.set(uid, true, v6) + " dst -j " + r);
      l.add("-A " + c + " -m conntrack --ctstate ESTABLISHED --ctdir ORIGINAL -j RETURN");
    }
    for (Cidr a : allow) if (a.ipv6() == v6) l.add("-A " + c + " -d " + a.text() + " -j RETURN");
    if (names != null) l.add("-A " + c + " -m set --match-set " + NameSets.set(uid, false, v6) + " dst -j RETURN");
    if (allowListWritten) l.add("-A " + c + " -j " + r);
    l.add("COMMIT");
    return String.join("\n", l) + "\n";
  }

  private static boolean isV6(InetAddress a) {
    return a instanceof Inet6Address;
  }

  private static String host(InetAddress a) {
    return Cidr.of(a).text();
  }
}
