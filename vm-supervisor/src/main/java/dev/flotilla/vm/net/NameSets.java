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

  /** The {@code iptables-restore --noflush} input of the redirect for one family. */
  public static String natScript(long uid, int port) {
    String c = natChain(uid);
    return "*nat\n:" + c + " - [0:0]\n"
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
      for (String line : natOutput(v6)) {
        Matcher m = NAT_JUMP.matcher(line);
        if (m.find() && m.group(1).equals(natChain(uid)) && !HostFirewall.split(line).subList(2, HostFirewall.split(line).size()).equals(jump)) {
          deleteRule(v6, line);
        }
      }
      List<String> check = new ArrayList<>(List.of(tool(v6), "-w", "-t", "nat", "-C", "OUTPUT"));
      check.addAll(jump);
      if (HostFirewall.exec(check, null).code() != 0) {
        List<String> insert = new ArrayList<>(List.of(tool(v6), "-w", "-t", "nat", "-I", "OUTPUT", "1"));
        insert.addAll(jump);
        HostFirewall.run(insert, null);
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

  /** uid to comment of every DNS redirect jump in nat OUTPUT whose comment starts with {@code prefix} (both families). */
  public static Map<Long, String> installed(String prefix) throws IOException {
    return HostFirewall.ownedJumps("nat", NAT_PREFIX, prefix);
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
      if (natChainExists(v6)) return true;
    }
    return false;
  }

  /** The members of one set as {@code ipset list} prints them (tests and diagnostics). */
  public String members(boolean deny, boolean v6) throws IOException {
    return HostFirewall.run(List.of("ipset", "list", set(uid, deny, v6)), null);
  }

  private void removeRedirect(boolean v6) throws IOException {
    for (String line : natOutput(v6)) {
      Matcher m = NAT_JUMP.matcher(line);
      if (m.find() && m.group(1).equals(natChain(uid))) {
        List<String> cmd = new ArrayList<>(List.of(tool(v6), "-w", "-t", "nat"));
        cmd.addAll(HostFirewall.split(line.replaceFirst("^-A ", "-D ")));
        HostFirewall.exec(cmd, null); // gone meanwhile is no error; one still there is caught below (-X of a referenced chain)
      }
    }
    for (String op : List.of("-F", "-X")) {
      if (!natChainExists(v6)) return;
      var r = HostFirewall.exec(List.of(tool(v6), "-w", "-t", "nat", op, natChain(uid)), null);
      if (r.code() != 0 && natChainExists(v6)) throw new IOException(tool(v6) + " -t nat " + op + " " + natChain(uid) + " failed: " + r.out().strip());
    }
  }

  private boolean natChainExists(boolean v6) throws IOException {
    return HostFirewall.exec(List.of(tool(v6), "-w", "-t", "nat", "-n", "-L", natChain(uid)), null).code() == 0;
  }

  private static List<String> natOutput(boolean v6) throws IOException {
    return HostFirewall.outputRules("nat", v6);
  }

  private static void deleteRule(boolean v6, String line) throws IOException {
    HostFirewall.deleteRule("nat", v6, line);
  }

  private static String tool(boolean v6) {
    return v6 ? "ip6tables" : "iptables";
  }
}
