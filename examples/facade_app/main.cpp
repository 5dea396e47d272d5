// facade_app: plain C++ (no actors) using aico::client: futures for calls,
// callbacks for the chat stream and the connection state.
//
//   facade_app [--config FILE] [--url URL] [--ipc ENDPOINT]
//              [--state-dir DIR] --user NAME
//              (--password-file FILE | --password PW) [--text TEXT]
//
// --password-file reads the password from the first line of FILE; --password
// works too, but a password on the command line is readable by every local
// user (/proc/PID/cmdline), so it prints a warning.
#include <condition_variable>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <string>

#include <aico/client.hpp>

using namespace std::chrono_literals;

int main(int argc, char** argv) {
  std::string config, user, password, text = "hello from facade_app";
  std::string url, ipc, state_dir;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--config")
      config = v;
    else if (a == "--url")
      url = v;
    else if (a == "--ipc")
      ipc = v;
    else if (a == "--state-dir")
      state_dir = v;
    else if (a == "--user")
      user = v;
    else if (a == "--password") {
      password = v;
      std::cerr << "facade_app: warning: a password on the command line is "
                   "readable by other local users; use --password-file\n";
    } else if (a == "--password-file") {
      std::ifstream in{v};
      if (!in || !std::getline(in, password)) {
        std::cerr << "facade_app: cannot read the password from '" << v
                  << "'\n";
        return 2;
      }
    } else if (a == "--text")
      text = v;
    else {
      std::cerr << "facade_app: bad argument '" << a << "'\n";
      return 2;
    }
  }
  // file + AICO_* environment, then the command line on top
  aico::client_config cfg;
  try {
    cfg = aico::client_config::load(config);
  } catch (const aico::client_error& e) {
    std::cerr << "facade_app: " << e.what() << std::endl;
    return 2;
  }
  cfg.url = url;
  cfg.ipc = ipc;
  cfg.state_dir = state_dir;
  std::cout << "aico client library " << aico::library_version() << std::endl;
  aico::client c{cfg}; // runs the engine on its own threads
  std::mutex mtx;
  std::condition_variable cv;
  std::map<std::string, std::string> replies; // bot replies by id
  auto states = c.on_connection_state([](const aico::connection_state& s) {
    std::cout << "state: " << aico::to_string(s) << std::endl;
  });
  auto messages = c.on_message([&](const aico::chat_message& m) {
    if (m.id.rfind("bot-", 0) != 0 || m.content.empty())
      return;
    std::lock_guard<std::mutex> guard{mtx};
    replies[m.id] = m.content;
    cv.notify_all();
  });
  try {
    auto s = c.login(user, password).get();
    std::cout << "logged in as " << s.username << std::endl;
    auto me = c.me().get();
    std::cout << "me: " << me.value.username << std::endl;
    auto m = c.send_message(text).get(); // queued (durable)
    std::cout << "sent message " << m.id << std::endl;
    {
      std::unique_lock<std::mutex> guard{mtx};
      auto key = "bot-" + m.id;
      if (!cv.wait_for(guard, 30s, [&] { return replies.count(key) > 0; })) {
        std::cout << "no reply in time" << std::endl;
        return 1;
      }
      std::cout << "bot reply: " << replies[key] << std::endl;
    }
    messages.cancel();
    auto q = c.queue_list().get();
    std::cout << "queue: " << q.size() << " entries" << std::endl;
  } catch (const aico::client_error& e) {
    std::cout << "error: " << e.what() << " (class "
              << aico::to_string(e.cls()) << ", retryable "
              << e.retryable() << ")" << std::endl;
    return 1;
  }
  std::cout << "facade_app: done" << std::endl;
  return 0; // ~client: bounded shutdown
}
