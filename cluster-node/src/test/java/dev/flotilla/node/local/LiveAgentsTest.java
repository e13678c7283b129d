package dev.flotilla.node.local;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.flotilla.node.local.Processes.Proc;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * Which agent JVMs {@link LocalCluster#liveAgents()} counts as its cluster's, over process tables
 * shaped as /proc shows them with the runc driver (the chaos suite's duplicate-VM check and
 * orphan count rest on it).
 */
class LiveAgentsTest {
  static final String BASE = "/tmp/flc1/";

  static Proc runc(long pid, long ppid, String node, String id, int incarnation) {
    return new Proc(pid, ppid, 'S', List.of("/usr/sbin/runc", "--root", BASE + node + "/vms/.runc", "run", "--bundle",
        BASE + node + "/vms/" + id + "-" + incarnation, "fl-" + id + "-" + incarnation));
  }

  static Proc tini(long pid, long ppid, String id) {
    return new Proc(pid, ppid, 'S', List.of("/.fl/bin/tini", "-s", "--", "/.fl/jre/bin/java", "-jar", "/.fl/agent.jar",
        "--sandbox-id", id));
  }

  /** The agent JVM inside the container: nothing on its command line names the node's data dir. */
  static Proc agent(long pid, long ppid, String id) {
    return new Proc(pid, ppid, 'S', List.of("/.fl/jre/bin/java", "-jar", "/.fl/agent.jar", "--listen", "unix:/.fl/run/agent.sock",
        "--sandbox-id", id, "--incarnation", "1"));
  }

  @Test
  void anAgentInARuncContainerOfThisClusterIsFoundThroughItsAncestors() {
    List<Proc> procs = List.of(
        new Proc(100, 1, 'S', List.of("java", "-jar", "flotilla.jar", "node", "--data-dir", BASE + "n1")),
        runc(200, 100, "n1", "sb-a", 1), tini(201, 200, "sb-a"), agent(202, 201, "sb-a"));
    assertEquals(Map.of("sb-a", List.of(202L)), LocalCluster.agentsOf(procs, BASE));
  }

  @Test
  void anAgentWhoseRuncOutlivedItsNodeIsStillCounted() {
    // the node JVM was killed: runc was re-parented to init, the VM lives on
    List<Proc> procs = List.of(runc(200, 1, "n2", "sb-a", 1), tini(201, 200, "sb-a"), agent(202, 201, "sb-a"));
    assertEquals(Map.of("sb-a", List.of(202L)), LocalCluster.agentsOf(procs, BASE));
  }

  @Test
  void twoLiveVmsOfOneSandboxOnTwoNodesAreBothCounted() {
    List<Proc> procs = List.of(runc(200, 1, "n1", "sb-a", 1), tini(201, 200, "sb-a"), agent(202, 201, "sb-a"),
        runc(300, 1, "n2", "sb-a", 2), tini(301, 300, "sb-a"), agent(302, 301, "sb-a"));
    assertEquals(Map.of("sb-a", List.of(202L, 302L)), LocalCluster.agentsOf(procs, BASE));
  }

  @Test
  void anotherClustersAgentsZombiesAndTheAgentsForkedChildrenAreNot() {
    List<Proc> procs = List.of(
        new Proc(200, 1, 'S', List.of("/usr/sbin/runc", "--root", "/tmp/flc2/n1/vms/.runc", "run")),
        tini(201, 200, "sb-other"), agent(202, 201, "sb-other"),
        runc(300, 1, "n1", "sb-z", 1), new Proc(302, 300, 'Z', agent(302, 300, "sb-z").argv()),
        runc(400, 1, "n1", "sb-a", 1), tini(401, 400, "sb-a"), agent(402, 401, "sb-a"), agent(403, 402, "sb-a"));
    assertEquals(Map.of("sb-a", List.of(402L)), LocalCluster.agentsOf(procs, BASE));
  }

  @Test
  void anAgentStartedBareByTheHostNamesTheDataDirItself() {
    List<Proc> procs = List.of(new Proc(500, 1, 'S', List.of("/usr/bin/java", "-jar", "agent.jar", "--listen",
        "unix:" + BASE + "n3/vms/sb-b-1/agent.sock", "--sandbox-id", "sb-b")));
    assertEquals(Map.of("sb-b", List.of(500L)), LocalCluster.agentsOf(procs, BASE));
  }
}
