package dev.flotilla.vm.net;

import java.io.IOException;
import java.net.Inet6Address;
import java.net.InetAddress;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The host side of matching host names at connection time, for one sandbox uid, beside its
 * {@link EgressRules}:
 * <ul>
 *   <li>four {@code ipset} sets ({@code hash:ip} with per-entry timeouts), allow and deny for each
 *       address family, that {@link DnsProxy} fills from the sandbox's lookups and that the uid's
 *       filter chain matches;</li>
 *   <li>a {@code nat OUTPUT} jump for the uid to {@code FLSBN-UID}, which redirects its UDP and
 *       TCP port 53, whatever the server, to the proxy's loopback port. NAT runs before the
 *       filter, which lets exactly that port through and refuses any other port 53.</li>
 *   <li>a {@code raw OUTPUT} jump for the uid to a chain of the same name, which tracks its port 53
 *       flows in a connection-tracking zone of its own ({@link #zone}), in their original direction.
 *       The kernel makes its NAT decision once per tracked flow: a packet that matches a flow
 *       tracked already follows that flow's translation. A sandbox's helper (passt, pasta) sends
 *       from the port the guest chose; had the node, or another sandbox, used the same port to
 *       the same server within the tracker's timeout (30 s for UDP), the sandbox's queries would
 *       follow that flow, past this redirect, and be lost until the timeout ran out (seen: about
 *       1 lookup in 100 failing after 10 s while the node's proxy asked the same server). In a
 *       zone of its own the flow is new, and redirected. The replies stay in the common zone, where
 *       the proxy's answers find the flow to translate them back.</li>
 * </ul>
 * Like the filter rules, all of it lives in the node's network namespace, out of the sandbox's reach.
 */
public final class NameSets implements NameGrants.Sets {
  public static final String NAT_PREFIX = "FLSBN-";
  /** The tool this needs beside {@link HostFirewall#TOOLS}. */
  public static final List<String> TOOLS = List.of("ipset");
  private static final Pattern NAT_JUMP = Pattern.compile("-A OUTPUT .*-j (" + Pattern.quote(NAT_PREFIX) + "\\d+)$");


  private final long uid;

  public NameSets(long uid) {
    if (uid <= 0) throw new IllegalArgumentException("a sandbox uid is never root: " + uid);
    this.uid = uid;
  }

  /** The set an allow (deny) list's looked-up addresses of one family go to. */
  public static String set(long uid, boolean deny, boolean v6) {
    return "FLSB" + (deny ? "D" : "A") + (v6 ? "6" : "4") + "-" + uid;
  }

  public static String natChain(long uid) {
    return NAT_PREFIX + uid;
  }

  /**
   * Creates the sets if missing. Present ones are kept (an adopted sandbox keeps what its lookups
   * granted) unless {@code fresh} (a new incarnation starts with none).
   */
  public void create(boolean fresh, int maxEntries) throws IOException {
    StringBuilder s = new StringBuilder();
    for (boolean deny : new boolean[] {false, true}) {
      for (boolean v6 : new boolean[] {false, true}) {
        String name = set(uid, deny, v6);
        s.append("create ").append(name).append(" hash:ip family ").append(v6 ? "inet6" : "inet")
            .append(" timeout 60 maxelem ").append(maxEntries).append('\n');
        if (fresh) s.append("flush ").append(name).append('\n');
      }
    }
    HostFirewall.run(List.of("ipset", "-exist", "restore"), s.toString());
  }

  @Override
  public void add(boolean deny, List<InetAddress> addresses, long ttlSeconds) throws IOException {
    StringBuilder s = new StringBuilder();
    for (InetAddress a : addresses) {
      s.append("add ").append(set(uid, deny, a instanceof Inet6Address)).append(' ').append(a.getHostAddress())
          .append(" timeout ").append(ttlSeconds).append('\n');
    }
    if (s.length() > 0) HostFirewall.run(List.of("ipset", "-exist", "restore"), s.toString());
  }

  /**
   * The tables with a chain and a jump for the uid, in the order they are installed: nat first, so
   * that a node that dies in between leaves a jump its next start finds ({@link #installed}); they
   * are removed in the reverse order for the same reason.
   */
  private static final List<String> TABLES = List.of("nat", "raw");

  /**
   * The connection-tracking zone of the uid's DNS flows, 1 to 65535 (0 is the common zone). Ranges
   * of sandboxes are 65536 ids apart, so live sandboxes' uids differ here unless 65535 ranges
   * apart; two that met would share a zone, as every sandbox did before zones, and the proxy's
   * check of the sender still holds.
   */
  static int zone(long uid) {
    return 1 + (int) (uid % 65535);
  }

  /** The {@code iptables-restore --noflush} input of the redirect for one family (its zone, then the redirect). */
  public static String natScript(long uid, int port) {
    String c = natChain(uid);
    return "*raw\n:" + c + " - [0:0]\n"
        + "-A " + c + " -p udp --dport 53 -j CT --zone-orig " + zone(uid) + "\n"
        + "-A " + c + " -p tcp --dport 53 -j CT --zone-orig " + zone(uid) + "\n"
        + "COMMIT\n"
        + "*nat\n:" + c + " - [0:0]\n"
        + "-A " + c + " -p udp --dport 53 -j REDIRECT --to-ports " + port + "\n"
        + "-A " + c + " -p tcp --dport 53 -j REDIRECT --to-ports " + port + "\n"
        + "COMMIT\n";
  }

  /**
   * Redirects the uid's DNS to {@code port} (IPv6 only if the proxy listens on ::1: otherwise the
   * filter refuses it) and makes sure nat OUTPUT jumps to it first.
   */
  public void installRedirect(String comment, int port, boolean v6Proxy) throws IOException {
    List<String> jump = List.of("-m", "owner", "--uid-owner", Long.toString(uid), "-m", "comment", "--comment", comment, "-j", natChain(uid));
    for (boolean v6 : new boolean[] {false, true}) {
      if (v6 && !v6Proxy) {
        removeRedirect(true);
        continue;
      }
      HostFirewall.run(List.of(v6 ? "ip6tables-restore" : "iptables-restore", "--noflush"), natScript(uid, port));
      for (String table : TABLES) {
        for (String line : HostFirewall.outputRules(table, v6)) {
          Matcher m = NAT_JUMP.matcher(line);
          if (m.find() && m.group(1).equals(natChain(uid)) && !HostFirewall.split(line).subList(2, HostFirewall.split(line).size()).equals(jump)) {
            HostFirewall.deleteRule(table, v6, line);
          }
        }
        List<String> check = new ArrayList<>(List.of(tool(v6), "-w", "-t", table, "-C", "OUTPUT"));
        check.addAll(jump);
        if (HostFirewall.exec(check, null).code() != 0) {
          List<String> insert = new ArrayList<>(List.of(tool(v6), "-w", "-t", table, "-I", "OUTPUT", "1"));
          insert.addAll(jump);
          HostFirewall.run(insert, null);
        }
      }
    }
  }

  /**
   * Removes the redirect and destroys the sets; what is gone already is no error. Call it only
   * once the uid's filter rules, which match the sets, are gone.
   */
  public void remove() throws IOException {
    IOException first = null;
    for (boolean v6 : new boolean[] {false, true}) {
      try {
        removeRedirect(v6);
      } catch (IOException e) {
        if (first == null) first = e;
      }
    }
    try {
      for (boolean deny : new boolean[] {false, true}) {
        for (boolean v6 : new boolean[] {false, true}) {
          String name = set(uid, deny, v6);
          if (!sets().contains(name)) continue;
          var r = HostFirewall.exec(List.of("ipset", "destroy", name), null);
          if (r.code() != 0 && sets().contains(name)) throw new IOException("ipset destroy " + name + " failed: " + r.out().strip());
        }
      }
    } catch (IOException e) {
      if (first == null) first = e;
    }
    if (first != null) throw first;
  }

  private static List<String> sets() throws IOException {
    return HostFirewall.run(List.of("ipset", "list", "-n"), null).lines().map(String::strip).toList();
  }

  /**
   * uid to comment of every DNS redirect jump in nat or raw OUTPUT whose comment starts with
   * {@code prefix} (both families).
   */
  public static Map<Long, String> installed(String prefix) throws IOException {
    Map<Long, String> out = new java.util.LinkedHashMap<>();
    for (String table : TABLES) out.putAll(HostFirewall.ownedJumps(table, NAT_PREFIX, prefix));
    return out;
  }

  /**
   * What the kernel lacks for this (IP sets, the NAT table), by asking the tools; empty if nothing.
   * Asked once per node: it runs two commands.
   */
  public static java.util.Optional<String> kernelSupport() {
    try {
      var sets = HostFirewall.exec(List.of("ipset", "list", "-n"), null);
      if (sets.code() != 0) return java.util.Optional.of("the kernel has no IP sets (ip_set): " + sets.out().strip());
      var nat = HostFirewall.exec(List.of("iptables", "-w", "-t", "nat", "-S", "OUTPUT"), null);
      if (nat.code() != 0) return java.util.Optional.of("the kernel has no IPv4 NAT table: " + nat.out().strip());
      var raw = HostFirewall.exec(List.of("iptables", "-w", "-t", "raw", "-S", "OUTPUT"), null);
      if (raw.code() != 0) return java.util.Optional.of("the kernel has no IPv4 raw table (connection-tracking zones): " + raw.out().strip());
      return java.util.Optional.empty();
    } catch (IOException e) {
      return java.util.Optional.of("cannot run ipset or iptables: " + e.getMessage());
    }
  }

  /** Whether anything of this uid's is on the host (tests). */
  public boolean present() throws IOException {
    List<String> sets = sets();
    for (boolean deny : new boolean[] {false, true}) {
      for (boolean v6 : new boolean[] {false, true}) {
        if (sets.contains(set(uid, deny, v6))) return true;
      }
    }
    for (boolean v6 : new boolean[] {false, true}) {
      for (String table : TABLES) {
        if (chainExists(table, v6)) return true;
      }
    }
    return false;
  }

  /** The members of one set as {@code ipset list} prints them (tests and diagnostics). */
  public String members(boolean deny, boolean v6) throws IOException {
    return HostFirewall.run(List.of("ipset", "list", set(uid, deny, v6)), null);
  }

  private void removeRedirect(boolean v6) throws IOException {
    for (int i = TABLES.size() - 1; i >= 0; i--) removeChain(TABLES.get(i), v6);
  }

  private void removeChain(String table, boolean v6) throws IOException {
    for (String line : HostFirewall.outputRules(table, v6)) {
      Matcher m = NAT_JUMP.matcher(line);
      if (m.find() && m.group(1).equals(natChain(uid))) {
        List<String> cmd = new ArrayList<>(List.of(tool(v6), "-w", "-t", table));
        cmd.addAll(HostFirewall.split(line.replaceFirst("^-A ", "-D ")));
        HostFirewall.exec(cmd, null); // gone meanwhile is no error; one still there is caught below (-X of a referenced chain)
      }
    }
    for (String op : List.of("-F", "-X")) {
      if (!chainExists(table, v6)) return;
      var r = HostFirewall.exec(List.of(tool(v6), "-w", "-t", table, op, natChain(uid)), null);
      if (r.code() != 0 && chainExists(table, v6)) throw new IOException(tool(v6) + " -t " + table + " " + op + " " + natChain(uid) + " failed: " + r.out().strip());
    }
  }

  private boolean chainExists(String table, boolean v6) throws IOException {
    return HostFirewall.exec(List.of(tool(v6), "-w", "-t", table, "-n", "-L", natChain(uid)), null).code() == 0;
  }

  private static String tool(boolean v6) {
    return v6 ? "ip6tables" : "iptables";
  }
}
