package dev.flotilla.vm.net;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The node's side of {@link EgressRules}: installs, replaces and removes them with Debian's
 * {@code iptables}/{@code ip6tables} (and their {@code -restore}, which replaces a chain's rules in
 * one commit, so a refresh never leaves a moment without them). Everything lives in the network
 * namespace the node runs in, where a sandbox's root has no capability.
 */
public final class HostFirewall {
  private static final Pattern JUMP = ownedJump(EgressRules.CHAIN_PREFIX);
  private static final Pattern ANY_JUMP = Pattern.compile("-A OUTPUT .*-j (" + Pattern.quote(EgressRules.CHAIN_PREFIX) + "\\d+)$");

  /** The tools this needs, for {@code HostFacts}-style checks. */
  public static final List<String> TOOLS = List.of("iptables", "ip6tables", "iptables-restore", "ip6tables-restore");

  /**
   * One change at a time in this JVM: each is several commands (check, then delete or insert), and
   * two drivers' networks of one uid may end at once (an adopted VM and the VM object that started it).
   */
  private static final Object LOCK = new Object();

  /** Installs (or atomically replaces) the rules, then makes sure OUTPUT jumps to them first. */
  public void install(EgressRules rules) throws IOException {
    synchronized (LOCK) {
      installLocked(rules);
    }
  }

  private void installLocked(EgressRules rules) throws IOException {
    for (boolean v6 : new boolean[] {false, true}) {
      run(List.of(restore(v6), "--noflush"), rules.restoreScript(v6));
      String chain = EgressRules.chain(rules.uid());
      List<String> jump = rules.jump();
      for (String line : outputRules(v6)) {
        Matcher m = ANY_JUMP.matcher(line);
        if (m.find() && m.group(1).equals(chain) && !split(line).subList(2, split(line).size()).equals(jump)) deleteRule(v6, line);
      }
      List<String> check = new ArrayList<>(List.of(tool(v6), "-w", "-C", "OUTPUT"));
      check.addAll(jump);
      if (exec(check, null).code != 0) {
        List<String> insert = new ArrayList<>(List.of(tool(v6), "-w", "-I", "OUTPUT", "1"));
        insert.addAll(jump);
        run(insert, null);
      }
    }
  }

  /**
   * Removes the uid's jump and chains from both families; what is already gone is no error. Only
   * if they are {@code comment}'s: a sandbox keeps its uid across incarnations, and the rules of
   * the one that runs must not go with a reaped older one.
   *
   * @return false if the uid's rules belong to another comment (left alone)
   */
  public boolean remove(long uid, String comment) throws IOException {
    synchronized (LOCK) {
      return removeLocked(uid, comment);
    }
  }

  private boolean removeLocked(long uid, String comment) throws IOException {
    for (boolean v6 : new boolean[] {false, true}) {
      for (String line : outputRules(v6)) {
        Matcher m = JUMP.matcher(line);
        if (m.matches() && Long.parseLong(m.group(1)) == uid && !m.group(2).equals(comment)) return false;
      }
    }
    IOException first = null;
    for (boolean v6 : new boolean[] {false, true}) {
      try {
        for (String line : outputRules(v6)) {
          Matcher m = ANY_JUMP.matcher(line);
          if (m.find() && m.group(1).equals(EgressRules.chain(uid))) deleteRule(v6, line);
        }
        for (String chain : List.of(EgressRules.chain(uid), EgressRules.refuseChain(uid))) {
          if (exec(List.of(tool(v6), "-w", "-n", "-L", chain), null).code != 0) continue;
          run(List.of(tool(v6), "-w", "-F", chain), null);
        }
        for (String chain : List.of(EgressRules.chain(uid), EgressRules.refuseChain(uid))) {
          if (exec(List.of(tool(v6), "-w", "-n", "-L", chain), null).code != 0) continue;
          run(List.of(tool(v6), "-w", "-X", chain), null);
        }
      } catch (IOException e) {
        if (first == null) first = e;
      }
    }
    if (first != null) throw first;
    return true;
  }

  /** uid to comment of every sandbox jump in OUTPUT whose comment starts with {@code prefix} (both families). */
  public Map<Long, String> installed(String prefix) throws IOException {
    return ownedJumps("filter", EgressRules.CHAIN_PREFIX, prefix);
  }

  /**
   * uid to comment of every jump in {@code table}'s OUTPUT that matches a uid and has a comment
   * starting with {@code prefix}, into a chain named {@code chainPrefix} and a number (both families).
   */
  static Map<Long, String> ownedJumps(String table, String chainPrefix, String prefix) throws IOException {
    Pattern owned = ownedJump(chainPrefix);
    Map<Long, String> out = new LinkedHashMap<>();
    for (boolean v6 : new boolean[] {false, true}) {
      for (String line : outputRules(table, v6)) {
        Matcher m = owned.matcher(line);
        if (m.matches() && m.group(2).startsWith(prefix)) out.put(Long.parseLong(m.group(1)), m.group(2));
      }
    }
    return out;
  }

  /** The rules of a chain as {@code iptables -S} prints them, empty if there is no such chain. */
  public List<String> rules(boolean v6, String chain) throws IOException {
    Result r = exec(List.of(tool(v6), "-w", "-S", chain), null);
    if (r.code != 0) return List.of();
    return r.out.lines().toList();
  }

  private List<String> outputRules(boolean v6) throws IOException {
    return outputRules("filter", v6);
  }

  /** A jump from OUTPUT for one uid, with a comment (group 2), into {@code chainPrefix} and a number. */
  static Pattern ownedJump(String chainPrefix) {
    return Pattern.compile("-A OUTPUT -m owner --uid-owner (\\d+) -m comment --comment \"?([^\" ]+)\"? -j "
        + Pattern.quote(chainPrefix) + "\\d+");
  }

  /** The rules of {@code table}'s OUTPUT chain as {@code iptables -S} prints them. */
  static List<String> outputRules(String table, boolean v6) throws IOException {
    return run(List.of(tool(v6), "-w", "-t", table, "-S", "OUTPUT"), null).lines().filter(l -> l.startsWith("-A ")).toList();
  }

  private void deleteRule(boolean v6, String line) throws IOException {
    deleteRule("filter", v6, line);
  }

  /** Deletes a rule of {@code table} given as {@code iptables -S} prints it. */
  static void deleteRule(String table, boolean v6, String line) throws IOException {
    List<String> cmd = new ArrayList<>(List.of(tool(v6), "-w", "-t", table));
    cmd.addAll(split(line.replaceFirst("^-A ", "-D ")));
    run(cmd, null);
  }

  /** Splits {@code iptables -S} output into arguments (it quotes only comments, which have no spaces here). */
  static List<String> split(String line) {
    List<String> out = new ArrayList<>();
    for (String w : line.trim().split("\\s+")) out.add(w.length() >= 2 && w.startsWith("\"") && w.endsWith("\"") ? w.substring(1, w.length() - 1) : w);
    return out;
  }

  private static String tool(boolean v6) {
    return v6 ? "ip6tables" : "iptables";
  }

  private static String restore(boolean v6) {
    return v6 ? "ip6tables-restore" : "iptables-restore";
  }

  record Result(int code, String out) {}

  static String run(List<String> cmd, String stdin) throws IOException {
    Result r = exec(cmd, stdin);
    if (r.code != 0) throw new IOException(String.join(" ", cmd) + " failed (" + r.code + "): " + r.out.strip());
    return r.out;
  }

  static Result exec(List<String> cmd, String stdin) throws IOException {
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
    pb.environment().put("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    if (stdin == null) pb.redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
    Process p = pb.start();
    if (stdin != null) {
      try (var in = p.getOutputStream()) {
        in.write(stdin.getBytes(StandardCharsets.UTF_8));
      }
    }
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    try {
      if (!p.waitFor(60, TimeUnit.SECONDS)) {
        p.destroyForcibly();
        throw new IOException(String.join(" ", cmd) + " did not finish within 60 s");
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      p.destroyForcibly();
      throw new IOException("interrupted: " + String.join(" ", cmd));
    }
    return new Result(p.exitValue(), out);
  }
}
