package dev.flotilla.cli;

import java.util.ArrayList;
import java.util.List;
import picocli.CommandLine.Command;
import picocli.CommandLine.Unmatched;

/**
 * {@code flotilla node ...}: hands every argument after {@code node}, unparsed, to the node's own
 * {@code Main}, which owns its flags ({@code --grpc-port}, {@code --data-dir}, {@code --config},
 * ...). {@link Cli#main} takes this path before picocli when {@code node} comes first; this class
 * is here so {@code flotilla --help} lists it.
 */
@Command(name = "node",
    description = "Start a node (gRPC on 127.0.0.1:7070, data in ./data by default). "
        + "Its flags: see `flotilla node --help`.")
final class NodeCommand implements Runnable {
  @Unmatched List<String> args = new ArrayList<>();

  @Override
  public void run() {
    start(args.toArray(String[]::new));
  }

  static void start(String[] args) {
    dev.flotilla.node.Main.main(args);
  }
}
