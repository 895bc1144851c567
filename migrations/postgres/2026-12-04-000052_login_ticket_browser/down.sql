DROP INDEX login_ticket_browser_hash;
