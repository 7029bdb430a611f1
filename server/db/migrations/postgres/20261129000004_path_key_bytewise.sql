-- The files service finds the live files below a folder with a range over path_key
-- ([`dir/`, `dir0`)), which is exactly "starts with `dir/`" only under bytewise comparison.
ALTER TABLE files ALTER COLUMN path_key TYPE TEXT COLLATE "C";
