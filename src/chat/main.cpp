// aico-chat: a terminal chat over the aico engine (ncurses).
//
//   aico-chat [--url URL] [--ipc ENDPOINT] [--transports ipc,ws,http]
//             [--state-dir DIR] [--user NAME --password PW]
//             [--conversation ID]
//
// Threading: the UI (this file, the only one that includes ncurses) runs on
// the main thread; the engine's actors report to a listener actor that
// pushes model updates into a ui_queue, drained here between getch() calls
// (50 ms timeout). Requests go out through short-lived actors (bridge.hpp),
// so neither side ever blocks the other.
#include <langinfo.h>
#include <signal.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <clocale>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "caf/all.hpp"

#include "bridge.hpp"
#include "chat_model.hpp"
#include "cli_config.hpp"
#include "messages/engine.hpp"

// last, and as functions: its macros (move, timeout, ...) clash with CAF
#define NCURSES_NOMACROS
#include <curses.h>

using namespace aico;
using namespace aico::chat;
using namespace std::chrono_literals;

namespace {

std::atomic<bool> interrupted{false};

void on_signal(int) {
  interrupted = true;
}

struct options : cli::connection_options {
  std::string user;
  std::string password;
  std::string conversation;
};

// -- UTF-8 helpers (one column per code point is close enough here) ----------

bool is_continuation(char c) {
  return (static_cast<unsigned char>(c) & 0xC0) == 0x80;
}

size_t columns(const std::string& s) {
  size_t n = 0;
  for (char c : s)
    if (!is_continuation(c))
      ++n;
  return n;
}

/// The first `n` columns of `s`.
std::string head(const std::string& s, size_t n) {
  size_t cols = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (!is_continuation(s[i])) {
      if (cols == n)
        return s.substr(0, i);
      ++cols;
    }
  }
  return s;
}

/// The last `n` columns of `s`.
std::string tail(const std::string& s, size_t n) {
  auto total = columns(s);
  if (total <= n)
    return s;
  size_t skip = total - n, cols = 0;
  for (size_t i = 0; i < s.size(); ++i)
    if (!is_continuation(s[i]) && cols++ == skip)
      return s.substr(i);
  return {};
}

/// Splits `s` into pieces of at most `width` columns.
std::vector<std::string> wrap(const std::string& s, size_t width) {
  std::vector<std::string> res;
  if (width == 0)
    return res;
  std::string rest = s;
  do {
    auto piece = head(rest, width);
    res.push_back(piece);
    rest = rest.substr(piece.size());
  } while (!rest.empty());
  return res;
}

void pop_char(std::string& s) {
  while (!s.empty() && is_continuation(s.back()))
    s.pop_back();
  if (!s.empty())
    s.pop_back();
}

// -- the application -----------------------------------------------------------

class app {
public:
  app(caf::actor_system& sys, engine& eng, ui_queue& q, const options& o)
    : sys_(sys), eng_(eng), q_(q), o_(o) {
    model_.conversation_id = o.conversation;
    const char* cs = nl_langinfo(CODESET);
    if (cs && std::strcmp(cs, "UTF-8") == 0)
      model_.separator = " \xC2\xB7 "; // " · "
  }

  void start() {
    if (!o_.user.empty() && !o_.password.empty()) {
      login(o_.user, o_.password);
      return;
    }
    login_user_ = o_.user;
    ask<session_info>(
      eng_.tokens(), 5s,
      [this](chat_model& m, const session_info& s) { logged_in(m, s); },
      [](chat_model& m, const std::string&) { m.current = page::login; },
      session_atom::value);
  }

  /// Runs until /quit or a signal.
  void run() {
    bool dirty = true;
    auto last_draw = std::chrono::steady_clock::now();
    while (!model_.quit && !interrupted) {
      for (auto& f : q_.drain()) {
        f(model_);
        dirty = true;
      }
      after_updates();
      auto now = std::chrono::steady_clock::now();
      if (dirty || now - last_draw > 500ms) {
        draw();
        dirty = false;
        last_draw = now;
      }
      int ch = getch(); // waits at most 50 ms
      if (ch == ERR)
        continue;
      dirty = true;
      if (ch == KEY_RESIZE) {
        clear();
        continue;
      }
      if (model_.current == page::login)
        login_key(ch);
      else if (model_.current == page::conversation)
        chat_key(ch);
    }
  }

private:
  template <class Result, class Handle, class OnOk, class OnErr, class... Ts>
  void ask(Handle dest, caf::timespan t, OnOk ok, OnErr err, Ts... xs) {
    chat::ask<Result>(sys_, q_, dest, t, ok, err, xs...);
  }

  caf::timespan request_timeout() const {
    return eng_.config().request_timeout;
  }

  // -- session -----------------------------------------------------------

  void login(const std::string& user, const std::string& pw) {
    model_.login_pending = true;
    model_.login_error.clear();
    ask<session_info>(
      eng_.tokens(), request_timeout() + 2s,
      [this](chat_model& m, const session_info& s) { logged_in(m, s); },
      [](chat_model& m, const std::string& e) {
        m.login_pending = false;
        m.current = page::login;
        m.login_error = "login failed: " + e;
      },
      login_atom::value, user, pw);
  }

  void logged_in(chat_model& m, const session_info& s) {
    m.login_pending = false;
    m.login_error.clear();
    m.username = s.username;
    m.current = page::conversation;
    password_.clear();
    load_history();
    refresh_queue();
  }

  void load_history() {
    if (history_pending_)
      return;
    history_pending_ = true;
    history_query hq;
    hq.conversation_id = o_.conversation;
    hq.limit = 200;
    hq.read.max_age = caf::timespan{0};
    hq.read.force_refresh = true; // the cache answers only when offline
    ask<history_result>(
      eng_.chat(), request_timeout() + 4s,
      [this](chat_model& m, const history_result& r) {
        history_pending_ = false;
        m.load_history(r);
      },
      [this](chat_model& m, const std::string& e) {
        history_pending_ = false;
        m.notice("history unavailable: " + e);
      },
      history_atom::value, hq);
  }

  void refresh_queue() {
    ask<std::vector<queue_entry>>(
      eng_.queue(), 10s,
      [](chat_model& m, const std::vector<queue_entry>& xs) {
        m.queue_list_seen(xs);
      },
      [](chat_model& m, const std::string& e) {
        m.notice("offline queue unavailable: " + e);
      },
      list_atom::value);
  }

  /// Reacts to state changes: auth expired -> login screen; back online
  /// with an offline copy on screen -> reload the history.
  void after_updates() {
    auto up = model_.have_state
              && (model_.conn.state == link_state::connected
                  || model_.conn.state == link_state::degraded);
    if (up && !was_up_ && model_.current == page::conversation
        && model_.offline_copy)
      load_history();
    was_up_ = up;
    if (model_.have_state && model_.conn.state == link_state::auth_expired
        && model_.current == page::conversation && !auth_expired_shown_) {
      auth_expired_shown_ = true;
      model_.current = page::login;
      login_user_ = model_.username;
      login_field_ = 1;
      model_.login_error = "session expired: log in again";
    }
    if (model_.conn.state != link_state::auth_expired)
      auth_expired_shown_ = false;
  }

  // -- commands ----------------------------------------------------------

  void submit(const std::string& line) {
    if (line.empty())
      return;
    if (line[0] == '/') {
      command(line);
      return;
    }
    outgoing_message out;
    out.id = cli::new_message_id();
    out.conversation_id = o_.conversation;
    out.content = line;
    ask<chat_message>(
      eng_.chat(), 15s,
      [](chat_model& m, const chat_message& x) { m.upsert(x); },
      [](chat_model& m, const std::string& e) {
        m.notice("not sent: " + e);
      },
      send_atom::value, out);
  }

  void command(const std::string& line) {
    auto cmd = line.substr(0, line.find(' '));
    if (cmd == "/quit" || cmd == "/q") {
      model_.quit = true;
    } else if (cmd == "/status") {
      model_.notice("connection: " + model_.connection_text() + "; queue: "
                    + std::to_string(model_.queued_count()) + " pending, "
                    + std::to_string(model_.parked_count()) + " failed"
                    + "; user: " + model_.username);
    } else if (cmd == "/health") {
      read_options ro;
      ro.max_age = caf::timespan{0};
      ro.force_refresh = true;
      ask<health_result>(
        eng_.system(), request_timeout() + 4s,
        [](chat_model& m, const health_result& r) {
          std::string s = r.value.is_healthy ? "healthy" : "unhealthy";
          s = "health: " + s + ", version " + r.value.version;
          for (auto& [name, st] : r.value.services)
            s += ", " + name + " " + st;
          if (r.origin.from_cache)
            s += " (cached)";
          m.notice(s);
        },
        [](chat_model& m, const std::string& e) {
          m.notice("health: unavailable: " + e);
        },
        health_atom::value, ro);
    } else if (cmd == "/retry") {
      ask<std::vector<queue_entry>>(
        eng_.queue(), 10s,
        [this](chat_model& m, const std::vector<queue_entry>& xs) {
          m.queue_list_seen(xs);
          size_t n = 0;
          for (auto& e : xs) {
            if (e.state != "parked")
              continue;
            ++n;
            ask<queue_entry>(
              eng_.queue(), 10s,
              [](chat_model& m2, const queue_entry& x) {
                queue_update u;
                u.entry = x;
                u.status = queue_status::queued;
                m2.queue_update_seen(u);
              },
              [](chat_model& m2, const std::string& err) {
                m2.notice("retry failed: " + err);
              },
              retry_atom::value, e.seq);
          }
          m.notice(n == 0 ? std::string{"retry: no failed item"}
                          : "retry: " + std::to_string(n)
                              + " failed item(s) queued again");
        },
        [](chat_model& m, const std::string& e) {
          m.notice("retry: queue unavailable: " + e);
        },
        list_atom::value);
    } else if (cmd == "/thinking") {
      model_.show_thinking = !model_.show_thinking;
      model_.notice(model_.show_thinking
                      ? "thinking: shown (the model's inner monologue, "
                        "with the aico profile)"
                      : "thinking: hidden");
    } else if (cmd == "/help") {
      model_.notice("commands: /status /health /retry /thinking /quit; "
                    "PgUp/PgDn scroll");
    } else {
      model_.notice("unknown command " + cmd
                    + " (try /status /health /retry /thinking /quit)");
    }
  }

  // -- keys ----------------------------------------------------------------

  static bool is_enter(int ch) {
    return ch == '\n' || ch == '\r' || ch == KEY_ENTER;
  }

  static bool is_backspace(int ch) {
    return ch == KEY_BACKSPACE || ch == 127 || ch == 8;
  }

  static bool is_text(int ch) {
    return ch >= 32 && ch < 256 && ch != 127;
  }

  void login_key(int ch) {
    if (model_.login_pending)
      return;
    auto& field = login_field_ == 0 ? login_user_ : password_;
    if (ch == '\t' || ch == KEY_DOWN || ch == KEY_UP) {
      login_field_ = 1 - login_field_;
    } else if (is_enter(ch)) {
      if (login_field_ == 0) {
        login_field_ = 1;
      } else if (login_user_.empty()) {
        login_field_ = 0;
      } else {
        login(login_user_, password_);
      }
    } else if (is_backspace(ch)) {
      pop_char(field);
    } else if (is_text(ch)) {
      field += static_cast<char>(ch);
    }
  }

  void chat_key(int ch) {
    if (is_enter(ch)) {
      auto line = input_;
      input_.clear();
      scroll_ = 0;
      submit(line);
    } else if (is_backspace(ch)) {
      pop_char(input_);
    } else if (ch == KEY_PPAGE) {
      scroll_ += std::max(1, LINES - 4);
    } else if (ch == KEY_NPAGE) {
      scroll_ = std::max(0, scroll_ - std::max(1, LINES - 4));
    } else if (is_text(ch)) {
      input_ += static_cast<char>(ch);
    }
  }

  // -- drawing ---------------------------------------------------------------

  void put(int y, const std::string& s, attr_t a = A_NORMAL) {
    if (y < 0 || y >= LINES)
      return;
    auto w = static_cast<size_t>(std::max(COLS, 1));
    auto text = head(s, w);
    move(y, 0);
    clrtoeol();
    if (a != A_NORMAL)
      attron(a);
    addstr(text.c_str());
    if (a != A_NORMAL) {
      for (size_t i = columns(text); i < w; ++i)
        addch(' ');
      attroff(a);
    }
  }

  void draw() {
    erase();
    put(0, model_.status_bar(), A_REVERSE);
    switch (model_.current) {
      case page::starting:
        put(2, "aico-chat: starting...");
        break;
      case page::login:
        draw_login();
        break;
      case page::conversation:
        draw_conversation();
        break;
    }
    refresh();
  }

  void draw_login() {
    put(2, "aico-chat: log in (Tab switches fields, Enter submits)");
    // the aico profile logs in with the backend's user UUID and PIN (both
    // labels 10 columns wide: the cursor goes after them)
    bool aico = eng_.config().profile == wire_profile::aico;
    put(4, (aico ? "user id:  " : "username: ") + login_user_);
    put(5, (aico ? "PIN:      " : "password: ")
             + std::string(columns(password_), '*'));
    if (model_.login_pending)
      put(7, "logging in...");
    else if (!model_.login_error.empty())
      put(7, model_.login_error, A_BOLD);
    auto& f = login_field_ == 0 ? login_user_ : password_;
    move(login_field_ == 0 ? 4 : 5,
         std::min<int>(COLS - 1, 10 + static_cast<int>(columns(f))));
  }

  void draw_conversation() {
    std::string title = "conversation "
                        + (model_.shown_conversation.empty()
                             ? std::string{"(current)"}
                             : model_.shown_conversation);
    if (!model_.history_loaded)
      title += " (loading history...)";
    else if (model_.offline_copy)
      title += " (offline copy)";
    title += "   /status /health /retry /quit";
    put(1, title, A_BOLD);
    // message area: rows 2 .. LINES-2
    int top = 2, bottom = LINES - 2;
    int rows = bottom - top;
    if (rows > 0) {
      auto w = static_cast<size_t>(std::max(COLS, 1));
      std::vector<std::pair<std::string, attr_t>> wrapped;
      for (auto& l : model_.lines()) {
        attr_t a = l.kind == view_line::notice      ? A_DIM
                   : l.kind == view_line::streaming ? A_BOLD
                                                    : A_NORMAL;
        for (auto& piece : wrap(l.text, w))
          wrapped.emplace_back(piece, a);
      }
      int total = static_cast<int>(wrapped.size());
      scroll_ = std::max(0, std::min(scroll_, total - rows));
      int first = std::max(0, total - rows - scroll_);
      for (int i = 0; i < rows && first + i < total; ++i) {
        auto& [text, a] = wrapped[first + i];
        if (a != A_NORMAL)
          attron(a);
        mvaddstr(top + i, 0, text.c_str());
        if (a != A_NORMAL)
          attroff(a);
      }
    }
    auto w = static_cast<size_t>(std::max(COLS - 3, 1));
    auto shown = tail(input_, w);
    put(LINES - 1, "> " + shown);
    move(LINES - 1, std::min<int>(COLS - 1, 2 + static_cast<int>(columns(shown))));
  }

  caf::actor_system& sys_;
  engine& eng_;
  ui_queue& q_;
  const options& o_;
  chat_model model_;
  std::string input_;
  std::string login_user_;
  std::string password_;
  int login_field_ = 0;
  int scroll_ = 0;
  bool history_pending_ = false;
  bool was_up_ = false;
  bool auth_expired_shown_ = false;
};

} // namespace

int main(int argc, char** argv) {
  options o;
  o.program = "aico-chat";
  CLI::App cli_app{"aico-chat: a terminal chat over the aico engine"};
  cli::add_connection_options(cli_app, o);
  cli_app.add_option("--user", o.user,
                     "Log in as this user (with --password); default: the "
                     "stored session or the login screen");
  cli::password_source pw_src;
  cli_app.add_option("--password", pw_src.argv_value,
                     "Password for --user (for tests only: other users can "
                     "read it; the login screen asks for it otherwise)");
  cli::add_password_options(cli_app, pw_src);
  cli_app.add_option("--conversation", o.conversation,
                     "Conversation id (default: the current one)");
  try {
    cli_app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    auto rc = cli_app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  std::string err;
  auto cfg = cli::make_config(o, err);
  if (!cfg) {
    std::cerr << "aico-chat: " << err << std::endl;
    return 2;
  }
  if (!pw_src.argv_value.empty() || pw_src.from_stdin
      || !pw_src.file.empty()) {
    if (!cli::read_password("aico-chat", pw_src, "", o.password, err)) {
      std::cerr << "aico-chat: " << err << std::endl;
      return 2;
    }
  }
  // the engine's diagnostics go to a log file, not over the screen
  std::error_code ec;
  std::filesystem::create_directories(o.state_dir, ec);
  ::chmod(o.state_dir.c_str(), 0700);
  auto log_path = o.state_dir + "/aico-chat.log";
  if (!std::freopen(log_path.c_str(), "a", stderr)) {
    std::cerr << "aico-chat: cannot write " << log_path << std::endl;
    return 1;
  }
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  std::setlocale(LC_ALL, "");

  ui_queue q; // outlives the actor system: late replies are pushed here
  caf::actor_system_config sys_cfg;
  sys_cfg.set("scheduler.policy", caf::atom("sharing"));
  sys_cfg.set("scheduler.max-threads", 2);
  {
    caf::actor_system sys{sys_cfg};
    {
      engine eng{sys, std::move(*cfg)};
      auto listener = spawn_listener(sys, eng, q);
      initscr();
      cbreak();
      noecho();
      nonl();
      keypad(stdscr, TRUE);
      timeout(50);
      {
        app a{sys, eng, q, o};
        a.start();
        a.run();
      }
      endwin(); // the terminal is restored before the (bounded) shutdown
      caf::anon_send_exit(listener, caf::exit_reason::user_shutdown);
      // a stuck shutdown must not keep the user waiting
      std::thread{[] {
        std::this_thread::sleep_for(10s);
        std::_Exit(0);
      }}.detach();
    }
  }
  return 0;
}
