package dev.flotilla.bench;

import dev.flotilla.api.v1.ExecRequest;
import dev.flotilla.api.v1.GetSandboxRequest;
import dev.flotilla.api.v1.ListSandboxesRequest;
import dev.flotilla.cli.ClientOptions;
import dev.flotilla.cli.Endpoint;
import dev.flotilla.cli.FlotillaClient;
import dev.flotilla.cli.SandboxServiceMethods;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;

/**
 * What TLS costs a client: a new connection plus one ListSandboxes, and GetSandbox and
 * {@code exec -- true} round trips on one connection. Prints figures, asserts nothing. Against a running {@code dev-cluster}
 * (TLS, or {@code --plaintext} to compare), with its export line in the environment:
 * <pre>
 * ./flotilla dev-cluster --nodes 1        # in one terminal; in another, its export line, then:
 * id=$(./flotilla create)
 * java -cp cluster-node/target/flotilla.jar:cluster-node/target/test-classes dev.flotilla.bench.TlsBench SANDBOX_ID
 * </pre>
 */
public final class TlsBench {
  public static void main(String[] a) throws Exception {
    String ca = System.getenv("FLOTILLA_CA");
    ClientOptions.Tls tls = ca == null || ca.isEmpty() ? null : new ClientOptions.Tls(Path.of(ca), null, null);
    String token = Files.readString(Path.of(System.getenv("FLOTILLA_TOKEN_FILE"))).strip();
    var conn = new ClientOptions.Connection(Endpoint.parse(System.getenv("FLOTILLA_ENDPOINT")), token, "bench", Duration.ofSeconds(30), tls);
    String id = a[0];
    var list = ListSandboxesRequest.newBuilder().build();
    long[] fresh = new long[60];
    for (int i = 0; i < fresh.length; i++) {
      long t0 = System.nanoTime();
      try (FlotillaClient c = new FlotillaClient(conn)) { c.call(SandboxServiceMethods.LIST_SANDBOXES, list, null); }
      fresh[i] = System.nanoTime() - t0;
    }
    var get = GetSandboxRequest.newBuilder().setId(a[0]).build();
    long[] unary = new long[400];
    try (FlotillaClient c = new FlotillaClient(conn)) {
      for (int i = 0; i < 50; i++) c.call(SandboxServiceMethods.GET_SANDBOX, get, a[0]);
      for (int i = 0; i < unary.length; i++) {
        long t0 = System.nanoTime();
        c.call(SandboxServiceMethods.GET_SANDBOX, get, a[0]);
        unary[i] = System.nanoTime() - t0;
      }
    }
    var exec = ExecRequest.newBuilder().setSandboxId(id).addArgv("true").build();
    long[] rt = new long[200];
    try (FlotillaClient c = new FlotillaClient(conn)) {
      for (int i = 0; i < 20; i++) c.stream(SandboxServiceMethods.EXEC, exec, id, m -> {});
      for (int i = 0; i < rt.length; i++) {
        long t0 = System.nanoTime();
        c.stream(SandboxServiceMethods.EXEC, exec, id, m -> {});
        rt[i] = System.nanoTime() - t0;
      }
    }
    System.out.println((tls == null ? "plaintext" : "tls") + ": connect+ListSandboxes " + stats(Arrays.copyOfRange(fresh, 10, fresh.length))
        + "; GetSandbox on one connection " + stats(unary) + "; exec `true` on one connection " + stats(rt));
  }

  static String stats(long[] ns) {
    Arrays.sort(ns);
    return String.format("p50 %.2f ms p90 %.2f ms (n=%d)", ns[ns.length / 2] / 1e6, ns[ns.length * 9 / 10] / 1e6, ns.length);
  }
}
