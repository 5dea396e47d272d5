// host_app: a CAF application with its own actor ("greeter") that embeds
// the aico engine into its actor system. The greeter logs in, watches the
// chat stream, sends one message, prints the bot's streamed reply and quits.
//
//   host_app [--config FILE] [--url URL] [--ipc ENDPOINT] [--state-dir DIR]
//            --user NAME (--password-file FILE | --password PW) [--text TEXT]
//
// --password-file reads the password from the first line of FILE; --password
// works too, but a password on the command line is readable by every local
// user (/proc/PID/cmdline), so it prints a warning.
#include <fstream>
#include <iostream>
#include <string>

#include "caf/all.hpp"

#include <aico/actors.hpp>

using namespace std::chrono_literals;

namespace {

/// The greeter's own timer (not one of the engine's atoms).
using give_up_atom = caf::atom_constant<caf::atom("giveup")>;
constexpr give_up_atom give_up_atom_v{};

struct options {
  std::string config, url, ipc, state_dir, user, password;
  std::string text = "hello from host_app";
};

bool parse(int argc, char** argv, options& o) {
  std::string password_file;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&](std::string& out) {
      if (i + 1 >= argc)
        return false;
      out = argv[++i];
      return true;
    };
    bool ok = a == "--config"      ? next(o.config)
              : a == "--url"       ? next(o.url)
              : a == "--ipc"       ? next(o.ipc)
              : a == "--state-dir" ? next(o.state_dir)
              : a == "--user"      ? next(o.user)
              : a == "--password"  ? next(o.password)
              : a == "--password-file" ? next(password_file)
              : a == "--text"      ? next(o.text)
                                   : false;
    if (!ok) {
      std::cerr << "host_app: bad argument '" << a << "'\n";
      return false;
    }
    if (a == "--password")
      std::cerr << "host_app: warning: a password on the command line is "
                   "readable by other local users; use --password-file\n";
  }
  if (!password_file.empty()) {
    std::ifstream in{password_file};
    if (!in || !std::getline(in, o.password)) {
      std::cerr << "host_app: cannot read the password from '"
                << password_file << "'\n";
      return false;
    }
  }
  return !o.user.empty();
}

/// The host's own actor. It is a chat listener for the engine (message and
/// stream chunk handlers) and drives one conversation turn.
caf::behavior greeter(caf::event_based_actor* self, aico::actor_engine* eng,
                      options o) {
  auto sent_id = std::make_shared<std::string>();
  auto fail = [self](const std::string& what, const caf::error& err) {
    std::cout << "greeter: " << what << " failed: " << aico::describe(err)
              << std::endl;
    self->quit(caf::exit_reason::user_shutdown);
  };
  self->delayed_send(self, 40s, give_up_atom_v);
  self->request(eng->session(), 15s, aico::login_atom_v, o.user, o.password)
    .then(
      [=](const aico::session_info& s) {
        std::cout << "logged in as " << s.username << std::endl;
        // the greeter itself receives the chat stream
        self->send(eng->chat(), aico::watch_atom_v,
                   caf::actor_cast<aico::chat_listener_actor>(self));
        aico::outgoing_message m;
        m.content = o.text;
        self->request(eng->chat(), 15s, aico::send_atom_v, m)
          .then(
            [=](const aico::chat_message& cm) {
              *sent_id = cm.id;
              std::cout << "sent message " << cm.id << std::endl;
            },
            [=](const caf::error& err) { fail("send", err); });
      },
      [=](const caf::error& err) { fail("login", err); });
  return {
    [=](aico::message_atom, const aico::chat_message& m) {
      if (!sent_id->empty() && m.id == "bot-" + *sent_id
          && !m.content.empty()) {
        std::cout << "bot reply: " << m.content << std::endl;
        self->quit();
      }
    },
    [=](aico::event_atom, const aico::stream_chunk& c) {
      if (!sent_id->empty() && c.reply_to == *sent_id)
        std::cout << "chunk " << c.seq_no << ": " << c.chunk << std::endl;
    },
    [=](give_up_atom) {
      std::cout << "greeter: no reply in time" << std::endl;
      self->quit(caf::exit_reason::user_shutdown);
    },
  };
}

} // namespace

int main(int argc, char** argv) {
  options o;
  if (!parse(argc, argv, o)) {
    std::cerr << "usage: host_app [--config FILE] [--url URL] [--ipc EP] "
                 "[--state-dir DIR] --user NAME (--password-file FILE | --password PW)\n";
    return 2;
  }
  // file + AICO_* environment, then the command line on top
  aico::client_config cfg;
  try {
    cfg = aico::client_config::load(o.config);
  } catch (const aico::client_error& e) {
    std::cerr << "host_app: " << e.what() << std::endl;
    return 2;
  }
  cfg.url = o.url;
  cfg.ipc = o.ipc;
  cfg.state_dir = o.state_dir;
  caf::actor_system_config sys_cfg;
  sys_cfg.set("scheduler.policy", caf::atom("sharing")); // see docs
  sys_cfg.set("scheduler.max-threads", 2);
  caf::actor_system sys{sys_cfg};
  int rc = 1;
  {
    // the engine lives in the host's actor system next to the host's actors
    aico::actor_engine eng{sys, cfg};
    caf::scoped_actor self{sys};
    auto g = sys.spawn(greeter, &eng, o);
    self->monitor(g);
    self->receive([&](const caf::down_msg& dm) {
      rc = dm.reason == caf::exit_reason::normal ? 0 : 1;
    });
    // ~actor_engine: stops the engine's actors within cfg.shutdown_timeout
  }
  std::cout << "host_app: done (" << rc << ")" << std::endl;
  return rc;
}
